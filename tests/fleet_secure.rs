//! The fleet on an etcd that asks for TLS and a login (issue 9): a real 3-member etcd whose
//! client listeners speak TLS with a certificate made at test time, with authentication on
//! and a user allowed only the fleet's key prefix. Switchyards trust the certificate through
//! `[store.tls] ca` and log in with the user and password from the environment
//! (`store.user_env`, `store.password_env`); a change through one is applied by the other.
//! A wrong password, or a CA that did not sign etcd's certificate, leaves a node serving its
//! own file and reporting the store unreachable with the reason; the password is never shown.

mod support;

use anyhow::ensure;
use support::backend::Backend;
use support::config::VIEWER;
use support::etcd_cluster::EtcdCluster;
use support::fleet::{converged, fleet, node_with, put_ok, shared, CONVERGE};
use support::tls::SelfSigned;
use support::{eventually, Request};

const USER: &str = "switchyard";
const PASSWORD: &str = "etcd-pw-5b1e0c";
const PREFIX: &str = "/sy-test";

/// The `[store]` keys of a node logging in with `password` and trusting `ca`.
fn secure_store(ca: &std::path::Path) -> String {
    format!(
        "user_env = \"SY_ETCD_USER\"\npassword_env = \"SY_ETCD_PASSWORD\"\n[store.tls]\nca = {:?}\n",
        ca.display().to_string()
    )
}

#[test]
fn a_fleet_on_etcd_with_tls_and_a_login_shares_its_config_and_never_shows_the_password(
) -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    // etcd's certificate, and the one a node wrongly trusts.
    SelfSigned::new(&["localhost", "127.0.0.1"])?.write(certs.path(), "etcd")?;
    SelfSigned::new(&["localhost", "127.0.0.1"])?.write(certs.path(), "other")?;
    let (crt, key) = (certs.path().join("etcd.crt"), certs.path().join("etcd.key"));
    let Some(etcd) = EtcdCluster::start_tls(3, &crt, &key)? else {
        return Ok(());
    };
    etcd.enable_auth(USER, PASSWORD, PREFIX)?;
    let endpoints = etcd.tls_endpoints_toml();
    let env = [("SY_ETCD_USER", USER), ("SY_ETCD_PASSWORD", PASSWORD)];

    let blue = Backend::start("blue")?;
    let store = secure_store(&crt);
    let a = node_with(
        &endpoints,
        "a",
        Some(&shared(&blue.addr_str())),
        &store,
        &env,
    )?;
    let b = node_with(&endpoints, "b", None, &store, &env)?;
    converged(&[&a, &b], 1, &blue.addr_str())?;
    let green = Backend::start("green")?;
    assert_eq!(put_ok(&a, &shared(&green.addr_str()), Some(1))?, 2);
    converged(&[&a, &b], 2, &green.addr_str())?;
    let members = fleet(&b)?;
    ensure!(
        members.to_string().contains("\"a\"") && members.to_string().contains("\"b\""),
        "both nodes are registered: {members}"
    );
    let r = Request::get("/").send(b.http)?;
    assert!(r.text().contains("green"), "{}", r.describe());

    // A wrong password, and a CA that did not sign etcd's certificate: each node serves its
    // own file and says why the store cannot be reached.
    let wrong_pw = [
        ("SY_ETCD_USER", USER),
        ("SY_ETCD_PASSWORD", "not-the-password"),
    ];
    let c = node_with(
        &endpoints,
        "c",
        Some(&shared(&blue.addr_str())),
        &store,
        &wrong_pw,
    )?;
    let other_ca = secure_store(&certs.path().join("other.crt"));
    let d = node_with(
        &endpoints,
        "d",
        Some(&shared(&blue.addr_str())),
        &other_ca,
        &env,
    )?;
    for (n, why) in [(&c, "authentication failed"), (&d, "certificate")] {
        eventually(CONVERGE, || {
            let s = n.status()?;
            ensure!(s["store"]["reachable"] == false, "{}", s["store"]);
            let error = s["store"]["error"].as_str().unwrap_or_default();
            ensure!(
                !error.is_empty() && error.to_lowercase().contains(why),
                "the store's error says why: {}",
                s["store"]
            );
            Ok(())
        })?;
        let r = Request::get("/").send(n.http)?;
        assert!(r.text().contains("blue"), "{}", r.describe());
    }

    // The password is in no answer and no log line of any node.
    for n in [&a, &b, &c, &d] {
        for path in [
            "/v1/status",
            "/v1/config",
            "/v1/fleet",
            "/v1/config/history",
        ] {
            let r = n.send(Request::get(path).bearer(VIEWER))?;
            assert!(!r.text().contains(PASSWORD), "{path} shows the password");
        }
        assert!(!n.stderr().contains(PASSWORD), "the log shows the password");
    }
    Ok(())
}
