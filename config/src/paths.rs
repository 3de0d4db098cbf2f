//! Relative file paths in a config are relative to the config file's directory.

use std::path::{Path, PathBuf};

use crate::model::{Config, LogDestination, StateFile, TlsFiles};

fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

fn resolve_tls(base: &Path, t: &mut TlsFiles) {
    resolve(base, &mut t.cert);
    resolve(base, &mut t.key);
}

impl Config {
    /// Make every relative path (audit log, certificates, keys, access logs) relative to `base`, the
    /// config file's directory. Pure: no file is touched.
    pub fn resolve_paths(&mut self, base: &Path) {
        // `-` is standard output, not a file named `-` beside the config.
        if self.control.audit_log != Path::new("-") {
            resolve(base, &mut self.control.audit_log);
        }
        if let Some(t) = self.control.tls.as_mut() {
            resolve_tls(base, t);
        }
        for l in &mut self.http.listeners {
            l.tls.iter_mut().for_each(|t| resolve_tls(base, t));
            if let Some(LogDestination::File(p)) = l.access_log.as_mut().map(|a| &mut a.destination)
            {
                resolve(base, p);
            }
        }
        if let StateFile::Path(p) = &mut self.store.state_file {
            resolve(base, p);
        }
        if let Some(t) = self.store.etcd.as_mut().and_then(|e| e.tls.as_mut()) {
            resolve(base, &mut t.ca);
            if let Some(c) = t.client.as_mut() {
                resolve_tls(base, c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    #[test]
    fn relative_paths_join_the_config_directory_but_stdout_stays() {
        let mut config = crate::parse("[control]\naudit_log = \"audit.jsonl\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        config.resolve_paths(Path::new("/etc/sy"));
        assert_eq!(
            config.control.audit_log,
            PathBuf::from("/etc/sy/audit.jsonl")
        );

        let text = "[[http.listeners]]\nname = \"a\"\naddr = \"127.0.0.1:1\"\naccess_log = { path = \"access.log\" }\n[[http.listeners]]\nname = \"b\"\naddr = \"127.0.0.1:2\"\naccess_log = { path = \"stderr\" }\n";
        let mut config = crate::parse(text).unwrap_or_else(|e| panic!("{e}"));
        config.resolve_paths(Path::new("/etc/sy"));
        let dest = |i: usize| {
            config.http.listeners[i]
                .access_log
                .as_ref()
                .map(|a| a.destination.clone())
        };
        assert_eq!(
            dest(0),
            Some(crate::LogDestination::File(PathBuf::from(
                "/etc/sy/access.log"
            )))
        );
        assert_eq!(dest(1), Some(crate::LogDestination::Stderr));

        let mut config = crate::parse("").unwrap_or_else(|e| panic!("{e}"));
        config.resolve_paths(Path::new("/etc/sy"));
        assert_eq!(config.control.audit_log, PathBuf::from("-"));
    }

    #[test]
    fn the_state_file_sits_beside_the_config_unless_set_or_off() {
        let state = |text: &str| {
            let mut config = crate::parse(text).unwrap_or_else(|e| panic!("{e}"));
            config.resolve_paths(Path::new("/etc/sy"));
            config
                .store
                .state_file
                .for_config(Path::new("/etc/sy/switchyard.toml"))
        };
        assert_eq!(
            state(""),
            Some(PathBuf::from("/etc/sy/switchyard.state.json"))
        );
        assert_eq!(
            state("[store]\nstate_file = \"state/sy.json\"\n"),
            Some(PathBuf::from("/etc/sy/state/sy.json"))
        );
        assert_eq!(state("[store]\nstate_file = \"off\"\n"), None);
        let empty = crate::parse("[store]\nstate_file = \"\"\n").map(|_| ());
        assert!(empty.is_err_and(|e| e.to_string().contains("store.state_file")));
    }
}
