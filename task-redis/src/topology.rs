//! Which Redis a URL names: one server (`redis://`, `rediss://`), the primary that a
//! set of Sentinels watches (`redis+sentinel://`, `rediss+sentinel://`), or a Redis
//! Cluster (`redis+cluster://`, `rediss+cluster://`).

/// What a URL addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One server, by its URL.
    Single(String),
    /// The primary of `master` as the `sentinels` tell it.
    Sentinel(SentinelUrl),
    /// A Redis Cluster, reached through any of `nodes` (the rest is discovered).
    Cluster(ClusterUrl),
}

/// `redis+cluster://[[user]:password@]host:port[,host:port…][/0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterUrl {
    /// Some of the cluster's nodes, `host:port` (6379 when a port is left out).
    pub(crate) nodes: Vec<(String, u16)>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) tls: bool,
}

/// `redis+sentinel://[[user]:password@]host:port[,host:port…]/MASTER[/DB]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentinelUrl {
    /// The Sentinels, `host:port` (26379 when a port is left out).
    pub(crate) sentinels: Vec<(String, u16)>,
    /// The name the Sentinels monitor the primary under.
    pub(crate) master: String,
    pub(crate) db: i64,
    /// For the primary (the Sentinels are asked without).
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) tls: bool,
}

impl Topology {
    /// Reads `url`; an error says what is wrong with it.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        if let Some((tls, rest)) = scheme(url, "sentinel") {
            return sentinel(url, tls, rest);
        }
        if let Some((tls, rest)) = scheme(url, "cluster") {
            return cluster(url, tls, rest);
        }
        Ok(Topology::Single(url.to_owned()))
    }
}

/// `(tls, rest)` when `url` is `redis+KIND://rest` or `rediss+KIND://rest`.
fn scheme<'a>(url: &'a str, kind: &str) -> Option<(bool, &'a str)> {
    let (scheme, rest) = url.split_once("://")?;
    match scheme.strip_suffix(kind)?.strip_suffix('+')? {
        "redis" => Some((false, rest)),
        "rediss" => Some((true, rest)),
        _ => None,
    }
}

/// The credentials before the `@` (percent-decoded, as in a `redis://` URL: `%40` for
/// an `@` in a password), and the rest.
fn credentials(rest: &str) -> (Option<String>, Option<String>, &str) {
    let Some((info, rest)) = rest.rsplit_once('@') else { return (None, None, rest) };
    let decode = |part: &str| percent_encoding::percent_decode_str(part).decode_utf8_lossy().into_owned();
    match info.split_once(':') {
        Some((user, password)) => (Some(decode(user)).filter(|u| !u.is_empty()), Some(decode(password)), rest),
        None => (Some(decode(info)).filter(|u| !u.is_empty()), None, rest),
    }
}

fn hosts(list: &str, default_port: u16) -> Result<Vec<(String, u16)>, String> {
    list.split(',').filter(|h| !h.is_empty()).map(|h| host_port(h, default_port)).collect()
}

fn sentinel(url: &str, tls: bool, rest: &str) -> Result<Topology, String> {
    let shape = "redis+sentinel://[[user]:password@]host:port[,host:port…]/MASTER[/DB]";
    let (username, password, rest) = credentials(rest);
    let (list, path) = rest.split_once('/').ok_or_else(|| format!("`{}` names no master: {shape}", redact(url)))?;
    let sentinels = hosts(list, 26379)?;
    if sentinels.is_empty() {
        return Err(format!("`{}` names no sentinel: {shape}", redact(url)));
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let master = parts.next().ok_or_else(|| format!("`{}` names no master: {shape}", redact(url)))?;
    let db = match parts.next() {
        Some(db) => db.parse().map_err(|_| format!("`{db}` is not a database number in `{}`", redact(url)))?,
        None => 0,
    };
    Ok(Topology::Sentinel(SentinelUrl { sentinels, master: master.to_owned(), db, username, password, tls }))
}

fn cluster(url: &str, tls: bool, rest: &str) -> Result<Topology, String> {
    let shape = "redis+cluster://[[user]:password@]host:port[,host:port…]";
    let (username, password, rest) = credentials(rest);
    let (list, path) = rest.split_once('/').unwrap_or((rest, ""));
    let nodes = hosts(list, 6379)?;
    if nodes.is_empty() {
        return Err(format!("`{}` names no node: {shape}", redact(url)));
    }
    let db = path.split(['?', '#']).next().unwrap_or_default().trim_matches('/');
    if !db.is_empty() && db != "0" {
        return Err(format!("`{}` names database {db}: a Redis Cluster has database 0 only", redact(url)));
    }
    Ok(Topology::Cluster(ClusterUrl { nodes, username, password, tls }))
}

fn host_port(hostport: &str, default_port: u16) -> Result<(String, u16), String> {
    match hostport.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => {
            let port = port.parse().map_err(|_| format!("`{port}` is not a port (in `{hostport}`)"))?;
            Ok((host.to_owned(), port))
        }
        Some(_) => Err(format!("`{hostport}` names no host")),
        None => Ok((hostport.to_owned(), default_port)),
    }
}

fn redact(url: &str) -> String {
    task_core::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> SentinelUrl {
        match Topology::parse(url).unwrap() {
            Topology::Sentinel(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_urls_are_one_server() {
        assert_eq!(Topology::parse("redis://h:1/0"), Ok(Topology::Single("redis://h:1/0".into())));
        assert_eq!(Topology::parse("rediss://h/0"), Ok(Topology::Single("rediss://h/0".into())));
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_the_master_and_the_db() {
        let s = sentinel("redis+sentinel://s1:26380,s2,10.0.0.3:5000/mymaster/2");
        assert_eq!(s.sentinels, [("s1".into(), 26380), ("s2".into(), 26379), ("10.0.0.3".into(), 5000)]);
        assert_eq!((s.master.as_str(), s.db, s.tls), ("mymaster", 2, false));
        assert_eq!((s.username, s.password), (None, None));
        let s = sentinel("rediss+sentinel://app:p%40ss:w@s1:1/m?x=1");
        assert_eq!((s.master.as_str(), s.db, s.tls), ("m", 0, true));
        assert_eq!((s.username.as_deref(), s.password.as_deref()), (Some("app"), Some("p@ss:w")));
        let s = sentinel("redis+sentinel://:secret@s1:1/m/");
        assert_eq!((s.username, s.password.as_deref()), (None, Some("secret")));
    }

    #[test]
    fn cluster_urls_name_some_nodes() {
        let Ok(Topology::Cluster(c)) = Topology::parse("redis+cluster://app:p%40ss@h1:7000,h2,10.0.0.3:7002/0") else {
            panic!("a cluster")
        };
        assert_eq!(c.nodes, [("h1".into(), 7000), ("h2".into(), 6379), ("10.0.0.3".into(), 7002)]);
        assert_eq!((c.username.as_deref(), c.password.as_deref(), c.tls), (Some("app"), Some("p@ss"), false));
        let Ok(Topology::Cluster(c)) = Topology::parse("rediss+cluster://h1:7000") else { panic!("a cluster") };
        assert!(c.tls && c.username.is_none() && c.password.is_none());
        let e = Topology::parse("redis+cluster://:hunter2@/").unwrap_err();
        assert!(e.contains("names no node") && !e.contains("hunter2"), "{e}");
        assert!(Topology::parse("redis+cluster://h:1/2").unwrap_err().contains("database 0 only"));
        assert!(Topology::parse("redis+cluster://h:x").unwrap_err().contains("not a port"));
        assert_eq!(Topology::parse("redis+clusterx://h:1"), Ok(Topology::Single("redis+clusterx://h:1".into())));
    }

    #[test]
    fn bad_sentinel_urls_say_what_is_wrong_without_the_password() {
        let e = Topology::parse("redis+sentinel://s1:1").unwrap_err();
        assert!(e.contains("names no master"), "{e}");
        let e = Topology::parse("redis+sentinel://:hunter2@/m").unwrap_err();
        assert!(e.contains("no sentinel") && !e.contains("hunter2"), "{e}");
        assert!(Topology::parse("redis+sentinel://s1:x/m").unwrap_err().contains("not a port"));
        assert!(Topology::parse("redis+sentinel://s1:1/m/zero").unwrap_err().contains("database number"));
        assert!(Topology::parse("redis+sentinel://:1/m").unwrap_err().contains("names no host"));
    }
}
