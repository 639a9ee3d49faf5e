//! Which Redis a URL names: one server (`redis://`, `rediss://`), or the primary that a
//! set of Sentinels watches (`redis+sentinel://`, `rediss+sentinel://`).

/// What a URL addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One server, by its URL.
    Single(String),
    /// The primary of `master` as the `sentinels` tell it.
    Sentinel(SentinelUrl),
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
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            (true, rest)
        } else {
            return Ok(Topology::Single(url.to_owned()));
        };
        let shape = "redis+sentinel://[[user]:password@]host:port[,host:port…]/MASTER[/DB]";
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(userinfo), rest),
            None => (None, rest),
        };
        let (hosts, path) =
            rest.split_once('/').ok_or_else(|| format!("`{}` names no master: {shape}", redact(url)))?;
        let sentinels = hosts.split(',').filter(|h| !h.is_empty()).map(host_port).collect::<Result<Vec<_>, _>>()?;
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
        // Percent-decoded, as in a `redis://` URL (`%40` for an `@` in a password).
        let decode = |part: &str| percent_encoding::percent_decode_str(part).decode_utf8_lossy().into_owned();
        let (username, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (Some(decode(user)).filter(|u| !u.is_empty()), Some(decode(password))),
                None => (Some(decode(info)).filter(|u| !u.is_empty()), None),
            },
            None => (None, None),
        };
        Ok(Topology::Sentinel(SentinelUrl { sentinels, master: master.to_owned(), db, username, password, tls }))
    }
}

fn host_port(hostport: &str) -> Result<(String, u16), String> {
    match hostport.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => {
            let port = port.parse().map_err(|_| format!("`{port}` is not a port (in `{hostport}`)"))?;
            Ok((host.to_owned(), port))
        }
        Some(_) => Err(format!("`{hostport}` names no host")),
        None => Ok((hostport.to_owned(), 26379)),
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
