//! The validated config model: the only config types the rest of Switchyard sees.
//!
//! Every type here is built by [`crate::parse`] after validation, so code that holds a
//! [`Config`] may rely on its invariants (a route's upstream exists, a pool's weights sum
//! to more than zero, a cluster has exactly one primary, ...). Types derive `Serialize` so
//! the config can be hashed canonically, diffed and shown (with secrets redacted) by the
//! control plane; they never derive `Deserialize`: the only way in is validation.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// The whole validated config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub control: ControlConfig,
    pub http: HttpConfig,
    pub postgres: PostgresConfig,
    /// Where the config lives (`[store]`): the file (default) or a shared document in etcd.
    pub store: StoreConfig,
    /// What a rolling release may run (`[rollout]`): replace commands and webhooks by name.
    #[serde(skip_serializing_if = "RolloutConfig::is_empty")]
    pub rollout: RolloutConfig,
}

// === rollout ===

/// The ways a rolling release may replace a batch of backends, each under a name. A rollout
/// request only names one: a control API token can never choose a command or a URL.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct RolloutConfig {
    /// `[rollout.commands.NAME]`: a program and its arguments, run without a shell; the
    /// batch's addresses are in its environment.
    pub commands: BTreeMap<String, RolloutCommand>,
    /// `[rollout.webhooks.NAME]`: a URL that is sent the batch as JSON.
    pub webhooks: BTreeMap<String, RolloutWebhook>,
}

impl RolloutConfig {
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty() && self.webhooks.is_empty()
    }
}

/// A replace command: `argv[0]` is the program (no shell), killed after `timeout`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutCommand {
    pub argv: Vec<String>,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

/// A replace webhook: `POST url` with the batch as JSON; a 2xx answer within `timeout` means
/// the batch is being replaced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutWebhook {
    /// `http://host:port/path`.
    pub url: String,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

// === control ===

/// The control plane: API listener, who may call it, and where changes are recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlConfig {
    /// Address of the control API (loopback by default).
    pub listen: SocketAddr,
    /// JSON-lines audit log, one line per change attempt: `-` (the default) is standard
    /// output; relative paths are taken relative to the config file's directory.
    pub audit_log: PathBuf,
    /// Bearer tokens and their roles.
    pub tokens: Vec<TokenConfig>,
    /// Optional TLS for the control API.
    pub tls: Option<TlsFiles>,
    /// How many applied configs the history keeps.
    pub history_limit: usize,
    /// Period of the safety-net re-read of the config file (for filesystems without events).
    #[serde(serialize_with = "ser_duration")]
    pub reload_check_interval: Duration,
    /// Quiet time after the last file event before a reload.
    #[serde(serialize_with = "ser_duration")]
    pub reload_debounce: Duration,
}

/// A control API bearer token. The token itself is never in the config: only its SHA-256
/// or the name of the environment variable holding it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenConfig {
    pub name: String,
    pub role: Role,
    pub credential: TokenCredential,
}

/// Where a token's secret comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenCredential {
    /// SHA-256 of the token.
    Sha256(#[serde(serialize_with = "ser_hex")] [u8; 32]),
    /// The token is read from this environment variable when the config is applied.
    Env(String),
    /// The token's hex SHA-256 is read from this environment variable when the config is
    /// applied (a Kubernetes Secret holds the hashes, never the tokens).
    Sha256Env(String),
}

/// Control API roles, ordered by power: each role may do everything the one before may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read status, config, history and metrics.
    Viewer,
    /// Also run runtime operations (weights, flips, drains, promotions).
    Operator,
    /// Also replace the config and roll it back.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

// === http ===

/// The HTTP data plane.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct HttpConfig {
    pub listeners: Vec<Listener>,
    pub routes: Vec<Route>,
    pub upstreams: BTreeMap<String, Upstream>,
}

/// An HTTP listening socket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listener {
    pub name: String,
    pub addr: SocketAddr,
    /// Certificates for TLS; the one matching the client's SNI is served, the first by default.
    pub tls: Vec<TlsFiles>,
    /// Path answered by Switchyard itself for the load balancer in front.
    pub health_path: String,
    /// Largest request header block accepted.
    pub max_header_bytes: usize,
    /// Longest time from a request's first byte (or from accept, for a connection's first
    /// request) to the end of its header block (nginx `client_header_timeout`, HAProxy
    /// `timeout http-request`).
    #[serde(serialize_with = "ser_duration")]
    pub header_timeout: Duration,
    /// Longest time a keep-alive connection may sit idle between requests (nginx
    /// `keepalive_timeout`, HAProxy `timeout http-keep-alive`).
    #[serde(serialize_with = "ser_duration")]
    pub keepalive_timeout: Duration,
    /// Longest wait for the next bytes of a request body; a stalled body gets 408 (nginx
    /// `client_body_timeout`).
    #[serde(serialize_with = "ser_duration")]
    pub body_timeout: Duration,
    /// Client connections served at once; a connection over the cap is closed at once
    /// (counted), the ones already open are never dropped.
    pub max_connections: usize,
    /// Size of the read buffer pingora puts under each client connection (taken at accept,
    /// held until close); 0: none, reads go to the socket.
    pub read_buffer_bytes: usize,
    /// Which HTTP/1 codec serves the listener's HTTP/1 connections (HTTP/2 is always
    /// pingora's).
    pub http1: Http1Engine,
    /// The listener's access log; `None`: off (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
}

/// A listener's access log: one line per request, written off the request path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLog {
    pub format: AccessLogFormat,
    pub destination: LogDestination,
    /// Lines held for the writer; when it falls this far behind, new lines are dropped
    /// (and counted) rather than slowing requests.
    pub buffer_lines: usize,
}

/// How an access log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    /// nginx's `combined` format, followed by Switchyard's fields as `key=value`.
    Combined,
    /// One JSON object per line.
    Json,
}

/// Where a log goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogDestination {
    /// The process's standard error.
    Stderr,
    /// A file, opened for appending (and reopened on SIGUSR1, for logrotate).
    File(PathBuf),
}

/// Which requests a route takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostMatch {
    /// `*`: every host.
    Any,
    /// An exact host name, lower case, without port.
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com` (stored as `.example.com`).
    Suffix(String),
}

/// A route: host and longest path prefix to an upstream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    pub host: HostMatch,
    pub path_prefix: String,
    pub upstream: String,
    /// Extra attempts on other backends after the first.
    pub retries: u32,
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub read_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub write_timeout: Duration,
    /// Compress text responses with gzip when the client accepts it.
    pub gzip: bool,
    /// Responses shorter than this (by `Content-Length`) are sent as they are (nginx
    /// `gzip_min_length`): gzip's header and trailer alone are 18 bytes.
    pub gzip_min_length: u64,
    /// Largest request body accepted.
    pub max_body_bytes: u64,
}

/// The HTTP/1 request path of a listener (issue 12, `docs/HTTP1_PATH.md`): pingora-proxy's
/// own, or hyper's HTTP/1 codec over the same shared policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Http1Engine {
    #[default]
    Pingora,
    Hyper,
}

/// Balancing algorithm inside a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    LeastConn,
    RoundRobin,
}

/// A named group of backends with blue/green pools.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Upstream {
    pub balance: Balance,
    /// Failures within `fail_timeout` that eject a backend (nginx `max_fails`); 0 disables.
    pub max_fails: u32,
    #[serde(serialize_with = "ser_duration")]
    pub fail_timeout: Duration,
    /// Never eject more than this share of a pool.
    pub max_ejected_percent: u8,
    /// Backend statuses counted as failures (and retried for idempotent requests).
    pub failure_statuses: Vec<u16>,
    /// At most this share of requests may be retries.
    pub retry_budget: f64,
    /// Ramp a re-enabled backend's weight over this time.
    #[serde(serialize_with = "ser_opt_duration")]
    pub slow_start: Option<Duration>,
    pub health_check: Option<ActiveHealthCheck>,
    /// Pools by name (e.g. `blue`, `green`).
    pub pools: BTreeMap<String, Pool>,
}

/// Active HTTP health checking of an upstream's backends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveHealthCheck {
    pub path: String,
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Consecutive successes that bring a backend back.
    pub rise: u32,
    /// Consecutive failures that take it out.
    pub fall: u32,
    pub expect_status: u16,
    /// A response header of the check that names the backend's version (read by rollouts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_header: Option<String>,
}

/// A weighted set of backends; traffic is split between pools by `weight`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pool {
    pub weight: u32,
    pub backends: Vec<Backend>,
}

/// One backend server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backend {
    pub addr: Address,
    pub weight: u32,
    /// Administrative state set through the control API.
    pub state: BackendState,
}

/// Administrative state of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendState {
    Enabled,
    /// No new requests; in-flight ones finish.
    Drain,
}

/// `host:port`, where host is an IP literal or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

// === postgres ===

/// The Postgres router.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct PostgresConfig {
    pub clusters: Vec<Cluster>,
}

/// How long a client holds a server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    Transaction,
    Session,
}

/// One Postgres cluster: a primary, its replicas, and the listener clients connect to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    pub name: String,
    pub listen: SocketAddr,
    pub pool_mode: PoolMode,
    pub nodes: Vec<Node>,
    pub users: Vec<PgUser>,
    pub pool: PoolSettings,
    pub routing: RoutingSettings,
    pub failover: FailoverSettings,
    /// TLS offered to clients (`SSLRequest`); `None`: answered `N`.
    pub tls: Option<ClientTls>,
    /// TLS to the servers.
    pub server_tls: ServerTlsMode,
    /// CA certificates (PEM) that server certificates must chain to; `None`: not verified.
    pub server_tls_ca: Option<PathBuf>,
    /// Client connections served at once; the next one is refused with 53300.
    pub max_client_conn: u32,
}

/// TLS for the clients of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientTls {
    pub files: TlsFiles,
    pub mode: ClientTlsMode,
}

/// Whether clients may stay in the clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientTlsMode {
    /// TLS for clients that ask (`SSLRequest`), the clear for the others.
    Optional,
    /// A client that does not do TLS is refused (28000).
    Required,
}

/// TLS to the servers, as libpq's `sslmode` (`disable`, `prefer`, `require`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerTlsMode {
    Disable,
    /// TLS when the server offers it, the clear when it does not.
    Prefer,
    /// TLS or no connection.
    Require,
}

/// Role of a Postgres node as the config knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Primary,
    Replica,
}

/// A Postgres server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub addr: Address,
    pub role: NodeRole,
    /// Promotion tie-break among equally advanced replicas: higher wins.
    pub priority: u32,
    /// Set when the node was fenced by a failover; it gets no traffic until rejoined.
    pub fenced: Option<String>,
}

/// How clients prove who they are to Switchyard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    ScramSha256,
    Md5,
    Trust,
}

/// A database user: what clients log in as, and what Switchyard logs in to servers with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PgUser {
    pub name: String,
    /// `None` only with `client_auth = "trust"` against servers that trust us too.
    pub password: Option<Secret>,
    pub client_auth: ClientAuth,
}

/// Server connection pool settings, per node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolSettings {
    pub min_size: u32,
    pub max_size: u32,
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub max_lifetime: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub checkout_timeout: Duration,
}

/// Where reads go when no replica qualifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaFallback {
    Primary,
    Error,
}

/// Read/write split settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingSettings {
    pub read_write_split: bool,
    pub max_replica_lag_bytes: Option<u64>,
    #[serde(serialize_with = "ser_opt_duration")]
    pub max_replica_lag: Option<Duration>,
    pub fallback: ReplicaFallback,
    pub read_your_writes: bool,
    pub read_only_functions: Vec<String>,
    pub write_functions: Vec<String>,
}

/// Failure detection and promotion settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailoverSettings {
    /// Promote a replica automatically when the primary fails.
    pub auto_promote: bool,
    #[serde(serialize_with = "ser_duration")]
    pub check_interval: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub check_timeout: Duration,
    pub failure_threshold: u32,
    /// Longest time new write transactions wait for a promotion before failing.
    #[serde(serialize_with = "ser_duration")]
    pub write_pause_timeout: Duration,
    /// A lease in etcd that several Switchyards watching the cluster take before promoting.
    pub etcd: Option<EtcdSettings>,
}

/// Where the failover lease lives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EtcdSettings {
    /// `http://host:port` of etcd members, tried in order.
    pub endpoints: Vec<String>,
    /// Key prefix: the lease is `<prefix>/<cluster>/leader`, the decision
    /// `<prefix>/<cluster>/primary`.
    pub prefix: String,
    /// How long a lease outlives the Switchyard holding it.
    #[serde(serialize_with = "ser_duration")]
    pub lease_ttl: Duration,
}

// === store ===

/// `[store]`: where the config lives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// File mode: where the version counter and the bounded history are kept, so both
    /// survive a restart.
    pub state_file: StateFile,
    /// Etcd mode's settings (`None` with `kind = "file"`).
    pub etcd: Option<EtcdStore>,
}

/// `store.state_file`: the file keeping a file-mode node's version and history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateFile {
    /// Unset: `<config file's stem>.state.json` beside the config file (the default).
    BesideConfig,
    /// `state_file = "off"`: nothing is kept; versions start again at 1 after a restart.
    Off,
    /// A path (relative ones are relative to the config's directory).
    Path(PathBuf),
}

impl StateFile {
    /// The file for a config read from `config_path`, or `None` when off.
    pub fn for_config(&self, config_path: &std::path::Path) -> Option<PathBuf> {
        match self {
            StateFile::BesideConfig => Some(config_path.with_extension("state.json")),
            StateFile::Off => None,
            StateFile::Path(p) => Some(p.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    File,
    Etcd,
}

/// How a node reaches the shared document in etcd.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EtcdStore {
    /// `http://host:port` or `https://host:port` of etcd members.
    pub endpoints: Vec<String>,
    /// Key prefix: the document is `<prefix>/config`, its history `<prefix>/history/<version>`,
    /// the registered nodes `<prefix>/members/<node>`.
    pub prefix: String,
    /// This node's id in `GET /v1/fleet` (default: `<hostname>-<control port>`).
    pub node: Option<String>,
    /// Deadline of every etcd request; a change gets 503 after it.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// TTL of the node's registration lease.
    #[serde(serialize_with = "ser_duration")]
    pub lease_ttl: Duration,
    /// Names of the environment variables holding the etcd user and password (never the
    /// secrets themselves).
    pub user_env: Option<String>,
    pub password_env: Option<String>,
    /// TLS to etcd: the CA to trust, and optionally a client certificate.
    pub tls: Option<EtcdTls>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub client: Option<TlsFiles>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::File,
            state_file: StateFile::BesideConfig,
            etcd: None,
        }
    }
}

/// A secret string (a password). `Debug` never shows it; `Serialize` does, because the
/// canonical form is hashed: code that shows a config redacts it with [`crate::redact`].
///
/// A value serializes as a string and an environment reference as `{ "env": "NAME" }`, so
/// the two cannot be mistaken for each other (a password may well begin with `env:`).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Given in the file.
    Value(String),
    /// Read from this environment variable when applied.
    Env(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(<redacted>)"),
            Secret::Env(var) => write!(f, "Secret(env {var})"),
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Secret::Value(v) => s.serialize_str(v),
            Secret::Env(var) => {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("env", var)?;
                map.end()
            }
        }
    }
}

// === serde helpers ===

pub(crate) fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

fn ser_hex<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}
