//! Connections to Redis for one worker: standalone, Sentinel or Cluster,
//! each reconnected with backoff when it fails. Runs on the worker's Redis
//! thread only; nothing here knows about nginx.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    ProtocolVersion, PushInfo, RedisConnectionInfo, RedisError, RedisResult, TlsCertificates, TlsMode,
};
use sessions_core::config::redis_conf::{self as rc, Address, RedisSettings, Topology};

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a command could not run.
#[derive(Debug)]
pub struct Down(pub String);

impl From<RedisError> for Down {
    fn from(e: RedisError) -> Self {
        Down(e.to_string())
    }
}

/// When the next connection attempt may run.
struct Backoff {
    next: Option<Instant>,
    delay: Duration,
    /// Why the last attempt failed, repeated while waiting.
    why: String,
}

impl Backoff {
    const fn new() -> Self {
        Self {
            next: None,
            delay: BACKOFF_FIRST,
            why: String::new(),
        }
    }

    fn ready(&self) -> bool {
        self.next.is_none_or(|t| Instant::now() >= t)
    }

    fn failed(&mut self, why: &str) {
        why.clone_into(&mut self.why);
        self.next = Some(Instant::now() + self.delay);
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
    }

    fn succeeded(&mut self) {
        *self = Self::new();
    }
}

/// One open connection (or none yet) and its reconnection state.
struct Slot<C> {
    conn: Option<C>,
    backoff: Backoff,
}

/// A connection a command can run on.
#[derive(Clone)]
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    pub async fn run<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self {
            Self::Single(c) => cmd.query_async(c).await,
            Self::Cluster(c) => cmd.query_async(c).await,
        }
    }

    pub async fn pipe<T: redis::FromRedisValue>(&mut self, p: &redis::Pipeline) -> RedisResult<T> {
        match self {
            Self::Single(c) => p.query_async(c).await,
            Self::Cluster(c) => p.query_async(c).await,
        }
    }
}

enum Kind {
    Standalone(Client),
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        master_name: String,
        /// The master the open connections lead to.
        master: RefCell<Option<ConnectionAddr>>,
        /// Whether the sentinels know a replica of the master they think
        /// up: then a write is durable only once a replica has it.
        replicas_known: Cell<bool>,
    },
    Cluster(redis::cluster::ClusterClient),
}

/// How often closed connections of the kept-open minimum are reopened.
const KEEP_OPEN: Duration = Duration::from_secs(1);

/// How often the sentinels are asked whether the master moved.
const SENTINEL_WATCH: Duration = Duration::from_millis(500);

pub struct Backend {
    kind: Kind,
    config: AsyncConnectionConfig,
    /// Bounds connecting, discovery included.
    connect_timeout: Duration,
    slots: Vec<RefCell<Slot<Conn>>>,
    /// Serialises connection attempts per slot, so a burst connects once.
    connecting: Vec<tokio::sync::Mutex<()>>,
    min: usize,
    /// Standalone: the client of the near cache's tracking connection
    /// (RESP3, for Redis's invalidation pushes).
    tracking: Option<Client>,
    /// Cluster: how to reach one node for the near cache's tracking
    /// connections (RESP3, the same user and TLS as the cluster's).
    node: Option<NodeTemplate>,
}

struct NodeTemplate {
    redis: RedisConnectionInfo,
    tls: Option<(TlsMode, TlsCertificates)>,
}

/// Resolves the TLS server name to the configured address, so the name
/// checked in the certificate may differ from the address dialled.
struct FixedResolver {
    name: String,
    host: String,
    port: u16,
}

impl redis::io::AsyncDNSResolver for FixedResolver {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        host: &'b str,
        port: u16,
    ) -> redis::RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        Box::pin(async move {
            let (h, p) = if host == self.name {
                (self.host.as_str(), self.port)
            } else {
                (host, port)
            };
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((h, p)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

fn tls_mode(s: &RedisSettings) -> Option<TlsMode> {
    s.tls.unwrap_or(false).then(|| {
        if s.tls_verify.unwrap_or(true) {
            TlsMode::Secure
        } else {
            TlsMode::Insecure
        }
    })
}

fn certificates(s: &RedisSettings) -> TlsCertificates {
    TlsCertificates {
        client_tls: match (&s.tls_certificate, &s.tls_certificate_key) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            _ => None,
        },
        root_cert: s.tls_trusted_certificate.clone(),
    }
}

/// The address to dial for `a`; with TLS and `by_name`, the server name,
/// which `FixedResolver` maps back to the address.
fn connection_addr(a: &Address, s: &RedisSettings, by_name: bool) -> ConnectionAddr {
    match (a, tls_mode(s)) {
        (Address::Unix(p), _) => ConnectionAddr::Unix(p.into()),
        (Address::Tcp { host, port }, None) => ConnectionAddr::Tcp(host.clone(), *port),
        (Address::Tcp { host, port }, Some(mode)) => ConnectionAddr::TcpTls {
            host: s
                .tls_server_name
                .clone()
                .filter(|_| by_name)
                .unwrap_or_else(|| host.clone()),
            port: *port,
            insecure: mode == TlsMode::Insecure,
            tls_params: None,
        },
    }
}

fn redis_info(s: &RedisSettings) -> RedisConnectionInfo {
    let mut r = RedisConnectionInfo::default().set_db(i64::from(s.database.unwrap_or(0)));
    if let Some(u) = &s.username {
        r = r.set_username(u);
    }
    if let Some(p) = &s.password {
        r = r.set_password(p);
    }
    r
}

impl Backend {
    pub fn new(s: &RedisSettings, topology: &Topology) -> RedisResult<Self> {
        let connect_timeout = Duration::from_millis(s.connect_timeout.unwrap_or(rc::DEFAULT_CONNECT_TIMEOUT));
        let timeout = Duration::from_millis(s.timeout.unwrap_or(rc::DEFAULT_TIMEOUT));
        let mut config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(timeout));
        let (max, min) = s.connections();
        let tls = tls_mode(s).is_some();
        let mut tracking = None;
        let mut node = None;
        let kind = match topology {
            Topology::Standalone(a) => {
                if let (Some(name), Address::Tcp { host, port }) = (&s.tls_server_name, a) {
                    if tls {
                        config = config.set_dns_resolver(FixedResolver {
                            name: name.clone(),
                            host: host.clone(),
                            port: *port,
                        });
                    }
                }
                let info = connection_addr(a, s, true)
                    .into_connection_info()?
                    .set_redis_settings(redis_info(s));
                let resp3 = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
                let tracking_info = info.clone().set_redis_settings(resp3);
                let (client, t) = if tls {
                    (
                        Client::build_with_tls(info, certificates(s))?,
                        Client::build_with_tls(tracking_info, certificates(s))?,
                    )
                } else {
                    (Client::open(info)?, Client::open(tracking_info)?)
                };
                tracking = Some(t);
                Kind::Standalone(client)
            }
            Topology::Sentinel { master, nodes } => {
                let addrs = nodes.iter().map(|a| match a {
                    Address::Unix(p) => ConnectionAddr::Unix(p.into()),
                    Address::Tcp { host, port } => ConnectionAddr::Tcp(host.clone(), *port),
                });
                let mut b = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?
                    .set_client_to_redis_db(i64::from(s.database.unwrap_or(0)));
                if let Some(u) = &s.username {
                    b = b.set_client_to_redis_username(u);
                }
                if let Some(p) = &s.password {
                    b = b.set_client_to_redis_password(p);
                }
                if let Some(u) = &s.sentinel_username {
                    b = b.set_client_to_sentinel_username(u);
                }
                if let Some(p) = &s.sentinel_password {
                    b = b.set_client_to_sentinel_password(p);
                }
                if let Some(mode) = tls_mode(s) {
                    b = b
                        .set_client_to_redis_tls_mode(mode)
                        .set_client_to_redis_certificates(certificates(s));
                }
                Kind::Sentinel {
                    client: tokio::sync::Mutex::new(b.build()?),
                    master_name: master.clone(),
                    master: RefCell::new(None),
                    // Until the sentinels say otherwise: a write waits.
                    replicas_known: Cell::new(true),
                }
            }
            Topology::Cluster(nodes) => {
                let infos = nodes
                    .iter()
                    .map(|a| {
                        connection_addr(a, s, false)
                            .into_connection_info()
                            .map(|i| i.set_redis_settings(redis_info(s)))
                    })
                    .collect::<RedisResult<Vec<ConnectionInfo>>>()?;
                let mut b = ClusterClientBuilder::new(infos)
                    .connection_timeout(connect_timeout)
                    .response_timeout(timeout)
                    .retries(2);
                if let Some(u) = &s.username {
                    b = b.username(u);
                }
                if let Some(p) = &s.password {
                    b = b.password(p);
                }
                if let Some(mode) = tls_mode(s) {
                    b = b.tls(mode).certs(certificates(s));
                }
                node = Some(NodeTemplate {
                    redis: redis_info(s).set_protocol(ProtocolVersion::RESP3),
                    tls: tls_mode(s).map(|m| (m, certificates(s))),
                });
                Kind::Cluster(b.build()?)
            }
        };
        // A cluster connection multiplexes over every node already.
        let n = if matches!(kind, Kind::Cluster(_)) {
            1
        } else {
            max as usize
        };
        Ok(Self {
            kind,
            config,
            connect_timeout,
            slots: (0..n)
                .map(|_| {
                    RefCell::new(Slot {
                        conn: None,
                        backoff: Backoff::new(),
                    })
                })
                .collect(),
            connecting: (0..n).map(|_| tokio::sync::Mutex::new(())).collect(),
            min: (min as usize).min(n),
            tracking,
            node,
        })
    }

    /// Keeps the first `min` connections open: opens them at start, then
    /// every `KEEP_OPEN` pings them and reopens any that broke (each attempt
    /// still subject to its backoff), so that a request rarely pays for a
    /// reconnection.
    pub async fn keep_open(&self) {
        loop {
            for i in 0..self.min {
                let open = self.slots[i].borrow().conn.clone();
                match open {
                    Some(mut c) => {
                        if let Err(e) = c.run::<()>(&redis::cmd("PING")).await {
                            self.broken(i, &e);
                        }
                    }
                    None => {
                        let _ = self.conn(i).await;
                    }
                }
            }
            tokio::time::sleep(KEEP_OPEN).await;
        }
    }

    /// Runs a connection attempt, discovery included, within three times
    /// the connect timeout.
    async fn within_connect_timeout<T>(
        &self,
        fut: impl std::future::Future<Output = RedisResult<T>>,
    ) -> Result<T, Down> {
        match tokio::time::timeout(self.connect_timeout * 3, fut).await {
            Ok(r) => r.map_err(Down::from),
            Err(_) => Err(Down("connection timed out".into())),
        }
    }

    async fn open(&self) -> Result<Conn, Down> {
        let fut = async {
            match &self.kind {
                Kind::Standalone(c) => Ok(Conn::Single(
                    c.get_multiplexed_async_connection_with_config(&self.config)
                        .await?,
                )),
                Kind::Sentinel {
                    client: sc, master, ..
                } => {
                    // The master is asked of the sentinels on every connect,
                    // so a failover is followed on the next reconnection.
                    let client = sc.lock().await.async_get_client().await?;
                    master.replace(Some(client.get_connection_info().addr().clone()));
                    Ok(Conn::Single(
                        client
                            .get_multiplexed_async_connection_with_config(&self.config)
                            .await?,
                    ))
                }
                Kind::Cluster(c) => Ok(Conn::Cluster(c.get_async_connection().await?)),
            }
        };
        self.within_connect_timeout(fut).await
    }

    /// A connection to the standalone server that receives its pushes
    /// (RESP3) on `pushes`, for the near cache to turn tracking on. `None`
    /// in the other modes: a Cluster's nodes get their own
    /// (`open_node_tracking`), and with Sentinel there is no near cache.
    pub async fn open_tracking(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<PushInfo>,
    ) -> Result<Option<MultiplexedConnection>, Down> {
        let Some(client) = self.tracking.clone() else {
            return Ok(None);
        };
        let config = self.config.clone().set_push_sender(pushes);
        self.within_connect_timeout(async {
            Ok(Some(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            ))
        })
        .await
    }

    /// With Cluster, the masters now (`host:port`, sorted), as the cluster
    /// says (`CLUSTER SLOTS`); `None` in the other modes.
    pub async fn cluster_masters(&self) -> Result<Option<Vec<(String, u16)>>, Down> {
        if !matches!(self.kind, Kind::Cluster(_)) {
            return Ok(None);
        }
        let mut c = self.conn(0).await?;
        let slots: redis::Value = c.run(redis::cmd("CLUSTER").arg("SLOTS")).await?;
        let mut masters = Vec::new();
        if let redis::Value::Array(ranges) = slots {
            for r in &ranges {
                let redis::Value::Array(parts) = r else { continue };
                let Some(redis::Value::Array(m)) = parts.get(2) else {
                    continue;
                };
                let host = match m.first() {
                    Some(redis::Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                    Some(redis::Value::SimpleString(h)) => h.clone(),
                    _ => continue,
                };
                let Some(redis::Value::Int(port)) = m.get(1) else {
                    continue;
                };
                let Ok(port) = u16::try_from(*port) else { continue };
                masters.push((host, port));
            }
        }
        masters.sort();
        masters.dedup();
        Ok(Some(masters))
    }

    /// A RESP3 connection to one cluster node whose pushes go to `pushes`.
    pub async fn open_node_tracking(
        &self,
        (host, port): &(String, u16),
        pushes: tokio::sync::mpsc::UnboundedSender<PushInfo>,
    ) -> Result<MultiplexedConnection, Down> {
        let node = self.node.as_ref().ok_or_else(|| Down("not a cluster".into()))?;
        let config = self.config.clone().set_push_sender(pushes);
        let fut = async {
            let client = match &node.tls {
                None => Client::open(
                    ConnectionAddr::Tcp(host.clone(), *port)
                        .into_connection_info()?
                        .set_redis_settings(node.redis.clone()),
                )?,
                Some((mode, certs)) => Client::build_with_tls(
                    ConnectionAddr::TcpTls {
                        host: host.clone(),
                        port: *port,
                        insecure: *mode == TlsMode::Insecure,
                        tls_params: None,
                    }
                    .into_connection_info()?
                    .set_redis_settings(node.redis.clone()),
                    certs.clone(),
                )?,
            };
            client.get_multiplexed_async_connection_with_config(&config).await
        };
        self.within_connect_timeout(fut).await
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.kind, Kind::Cluster(_))
    }

    pub fn is_sentinel(&self) -> bool {
        matches!(self.kind, Kind::Sentinel { .. })
    }

    /// Under Sentinel, whether the sentinels know a replica of the master
    /// that they think up: in a failover the old master, cut off from the
    /// replica being promoted, has none of its own, yet what only it takes
    /// is lost.
    pub fn replicas_known(&self) -> bool {
        matches!(&self.kind, Kind::Sentinel { replicas_known, .. } if replicas_known.get())
    }

    /// Connection `hint` (modulo the pool), opened when needed. Fails fast
    /// while a failed connection waits out its backoff.
    pub async fn conn(&self, hint: usize) -> Result<Conn, Down> {
        let i = hint % self.slots.len();
        if let Some(c) = &self.slots[i].borrow().conn {
            return Ok(c.clone());
        }
        let _one = self.connecting[i].lock().await;
        {
            let slot = self.slots[i].borrow();
            if let Some(c) = &slot.conn {
                return Ok(c.clone());
            }
            if !slot.backoff.ready() {
                return Err(Down(slot.backoff.why.clone()));
            }
        }
        let r = self.open().await;
        let mut slot = self.slots[i].borrow_mut();
        match r {
            Ok(c) => {
                slot.backoff.succeeded();
                slot.conn = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                slot.backoff.failed(&e.0);
                Err(e)
            }
        }
    }

    /// With Sentinel, asks the sentinels every `SENTINEL_WATCH` where the
    /// master is and drops the connections when it moved, so that writes do
    /// not go on to a demoted master (whose data a resync would discard).
    pub async fn watch_sentinels(&self) {
        let Kind::Sentinel {
            client,
            master_name,
            master,
            replicas_known,
        } = &self.kind
        else {
            return;
        };
        let mut conn: Option<MultiplexedConnection> = None;
        loop {
            tokio::time::sleep(SENTINEL_WATCH).await;
            if master.borrow().is_none() {
                continue;
            }
            if conn.is_none() {
                let c = async {
                    let sentinel = client.lock().await.async_get_sentinel_client().await?;
                    sentinel
                        .get_multiplexed_async_connection_with_config(&self.config)
                        .await
                };
                conn = tokio::time::timeout(self.connect_timeout, c)
                    .await
                    .ok()
                    .and_then(Result::ok);
            }
            let Some(c) = &mut conn else { continue };
            let asked: RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(master_name)
                .query_async(c)
                .await;
            let Ok(Some((host, port))) = asked else {
                conn = None;
                continue;
            };
            let replicas: RedisResult<Vec<redis::Value>> = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg(master_name)
                .query_async(c)
                .await;
            if let Ok(r) = replicas {
                replicas_known.set(r.iter().any(replica_up));
            }
            let moved = match &*master.borrow() {
                Some(ConnectionAddr::Tcp(h, p)) | Some(ConnectionAddr::TcpTls { host: h, port: p, .. }) => {
                    *h != host || *p != port
                }
                _ => false,
            };
            if moved {
                master.replace(None);
                for slot in &self.slots {
                    slot.borrow_mut().conn = None;
                }
            }
        }
    }

    /// Drops connection `hint` after an error that says it is broken or
    /// points at a replica (after a failover), so the next use reconnects;
    /// whether it did. Other errors are Redis's answers to a command.
    pub fn broken(&self, hint: usize, e: &RedisError) -> bool {
        // A demoted master (READONLY), or one cut off from its replicas with
        // `min-replicas-to-write` set (NOREPLICAS): the master is moving.
        let replica = e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
            || e.code() == Some("NOREPLICAS");
        let broken = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_unrecoverable_error()
            || replica;
        if broken {
            let i = hint % self.slots.len();
            self.slots[i].borrow_mut().conn = None;
        }
        broken
    }
}

/// Whether an entry of `SENTINEL REPLICAS` (a flat list of names and
/// values, or a map) is a replica the sentinels think up.
fn replica_up(entry: &redis::Value) -> bool {
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    };
    let pairs: Vec<(String, String)> = match entry {
        redis::Value::Array(items) => items
            .chunks(2)
            .map(|p| (text(&p[0]), p.get(1).map(text).unwrap_or_default()))
            .collect(),
        redis::Value::Map(items) => items.iter().map(|(k, v)| (text(k), text(v))).collect(),
        _ => return false,
    };
    pairs.iter().any(|(k, flags)| {
        k == "flags"
            && !flags
                .split(',')
                .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(flags: &str) -> redis::Value {
        let s = |t: &str| redis::Value::BulkString(t.as_bytes().to_vec());
        redis::Value::Array(vec![s("name"), s("127.0.0.1:6380"), s("flags"), s(flags)])
    }

    #[test]
    fn a_replica_is_up_unless_the_sentinels_flag_it_down_or_disconnected() {
        assert!(replica_up(&entry("slave")));
        assert!(!replica_up(&entry("slave,s_down")));
        assert!(!replica_up(&entry("s_down,slave,disconnected")));
        assert!(!replica_up(&entry("slave,o_down")));
        let map = redis::Value::Map(vec![(
            redis::Value::SimpleString("flags".into()),
            redis::Value::SimpleString("slave".into()),
        )]);
        assert!(replica_up(&map));
        assert!(!replica_up(&redis::Value::Nil));
        assert!(!replica_up(&redis::Value::Array(vec![])));
    }

    proptest! {
        // What a sentinel answers is read, never trusted: any shape of
        // answer is a yes or a no, never a panic.
        #[test]
        fn any_sentinel_answer_reads_as_up_or_not(
            items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..9),
            odd in any::<bool>(),
        ) {
            let mut values: Vec<redis::Value> = items.into_iter().map(redis::Value::BulkString).collect();
            if odd {
                values.push(redis::Value::Int(7));
            }
            let _ = replica_up(&redis::Value::Array(values));
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_a_success_resets_it() {
        let mut b = Backoff::new();
        assert!(b.ready());
        let mut delays = Vec::new();
        for _ in 0..10 {
            b.failed("refused");
            assert!(!b.ready(), "waits after a failure");
            delays.push(b.delay);
        }
        assert_eq!(b.why, "refused");
        assert!(delays.windows(2).all(|w| w[1] == (w[0] * 2).min(BACKOFF_MAX)));
        assert_eq!(*delays.last().unwrap(), BACKOFF_MAX);
        b.succeeded();
        assert!(b.ready());
        assert_eq!(b.delay, BACKOFF_FIRST);
    }

    #[test]
    fn only_connection_errors_and_a_moving_master_drop_a_connection() {
        let fake = crate::fake::FakeRedis::start();
        let (settings, topology) = fake.settings(500);
        let backend = Backend::new(&settings, &topology).unwrap();
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(backend.broken(0, &io));
        let readonly = RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "READONLY You can't write against a read only replica.",
        ));
        assert!(backend.broken(0, &readonly));
        let noperm = RedisError::from((redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm), "NOPERM"));
        assert!(!backend.broken(0, &noperm));
    }
}
