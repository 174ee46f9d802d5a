//! Connection parameters with libpq's names, defaults and environment
//! variables: host, krbsrvname, gssencmode and gssdelegation.
//!
//! A libpq connection string in either form (`key=value ...` or a
//! `postgresql://` URI) can be given whole: the keys that concern GSSAPI
//! encryption are picked out and the others are ignored.

use crate::error::{Error, ErrorKind};

/// When to use GSSAPI encryption; libpq's `gssencmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GssEncMode {
    /// Never send GSSENCRequest.
    Disable,
    /// Try GSSAPI encryption and fall back to plaintext when the server
    /// declines or there are no credentials. libpq's default.
    Prefer,
    /// Fail unless the connection is encrypted.
    Require,
}

impl GssEncMode {
    pub fn parse(value: &str) -> Result<GssEncMode, Error> {
        match value {
            "disable" => Ok(GssEncMode::Disable),
            "prefer" => Ok(GssEncMode::Prefer),
            "require" => Ok(GssEncMode::Require),
            other => Err(invalid_value("gssencmode", other, "\"disable\", \"prefer\" or \"require\"")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GssEncMode::Disable => "disable",
            GssEncMode::Prefer => "prefer",
            GssEncMode::Require => "require",
        }
    }
}

/// Default Kerberos service name, as in libpq (PG_KRB_SRVNAM).
pub const DEFAULT_KRBSRVNAME: &str = "postgres";

/// Parameters of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Host name of the server as the caller wrote it; the target name is
    /// `krbsrvname@host`.
    pub host: Option<String>,
    pub krbsrvname: String,
    pub gssencmode: GssEncMode,
    pub gssdelegation: bool,
    /// Credential cache to take the client's ticket from; the default cache
    /// (KRB5CCNAME) when unset. Not a libpq parameter.
    pub ccache: Option<String>,
}

impl Default for Config {
    /// libpq's built-in defaults, without the environment.
    fn default() -> Self {
        Config {
            host: None,
            krbsrvname: DEFAULT_KRBSRVNAME.to_string(),
            gssencmode: GssEncMode::Prefer,
            gssdelegation: false,
            ccache: None,
        }
    }
}

/// Keys this library reads, with the environment variable that supplies
/// each default, as in libpq.
const KEYS: [(&str, &str); 4] = [
    ("host", "PGHOST"),
    ("krbsrvname", "PGKRBSRVNAME"),
    ("gssencmode", "PGGSSENCMODE"),
    ("gssdelegation", "PGGSSDELEGATION"),
];

impl Config {
    /// Built-in defaults overridden by the PG* environment variables.
    pub fn from_env() -> Result<Config, Error> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let mut config = Config::default();
        for (key, variable) in KEYS {
            if let Some(value) = lookup(variable) {
                if value.is_empty() {
                    continue;
                }
                config.set(key, &value).map_err(|err| {
                    Error::new(err.kind(), format!("environment variable {variable}: {}", err.message()))
                })?;
            }
        }
        Ok(config)
    }

    /// Sets one parameter by its libpq name. Returns false for keys this
    /// library does not use, which are ignored.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, Error> {
        match key {
            "host" => {
                self.host = parse_host(value)?;
            }
            "krbsrvname" => {
                if value.is_empty() || value.contains('@') || value.contains('\0') {
                    return Err(invalid_value("krbsrvname", value, "a service name without '@'"));
                }
                self.krbsrvname = value.to_string();
            }
            "gssencmode" => self.gssencmode = GssEncMode::parse(value)?,
            "gssdelegation" => {
                self.gssdelegation = match value {
                    "0" => false,
                    "1" => true,
                    other => return Err(invalid_value("gssdelegation", other, "\"0\" or \"1\"")),
                };
            }
            "ccache" => {
                if value.contains('\0') {
                    return Err(invalid_value("ccache", value, "a credential cache name"));
                }
                self.ccache = if value.is_empty() { None } else { Some(value.to_string()) };
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Applies the parameters of a libpq connection string, in `key=value`
    /// form or as a `postgresql://` or `postgres://` URI. Keys this library
    /// does not use are ignored; later keys override earlier ones.
    pub fn apply_conninfo(&mut self, conninfo: &str) -> Result<(), Error> {
        for (key, value) in parse_conninfo(conninfo)? {
            self.set(&key, &value)?;
        }
        Ok(())
    }
}

/// Parameters given explicitly by the caller, kept in order. The
/// environment supplies the rest when they are resolved, so that explicit
/// parameters win over PG* variables and an invalid variable for a key the
/// caller set does not matter, as in libpq.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    explicit: Vec<(String, String)>,
}

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// Sets one parameter by its libpq name, checking its value now.
    /// Unknown names are an error here, unlike in a conninfo string.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), Error> {
        if !Config::default().set(key, value)? {
            return Err(Error::new(
                ErrorKind::InvalidParameter,
                format!(
                    "unknown parameter \"{}\"; pggssenc uses host, krbsrvname, gssencmode, gssdelegation and ccache",
                    key.escape_debug()
                ),
            ));
        }
        self.explicit.push((key.to_string(), value.to_string()));
        Ok(())
    }

    /// Takes the parameters of a libpq connection string that this library
    /// uses, checking their values now; other keys are ignored. Nothing is
    /// kept when the string is invalid.
    pub fn apply_conninfo(&mut self, conninfo: &str) -> Result<(), Error> {
        let mut accepted = Vec::new();
        let mut scratch = Config::default();
        for (key, value) in parse_conninfo(conninfo)? {
            if scratch.set(&key, &value)? {
                accepted.push((key, value));
            }
        }
        self.explicit.extend(accepted);
        Ok(())
    }

    /// Builds the configuration: built-in defaults, then the environment for
    /// keys not given explicitly, then the explicit parameters in order.
    pub fn resolve(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let given: Vec<&str> = self.explicit.iter().map(|(key, _)| key.as_str()).collect();
        let mut config = Config::from_lookup(|variable| {
            let key = KEYS.iter().find(|(_, name)| *name == variable).map(|(key, _)| *key)?;
            if given.contains(&key) {
                None
            } else {
                lookup(variable)
            }
        })?;
        for (key, value) in &self.explicit {
            config.set(key, value)?;
        }
        Ok(config)
    }
}

/// Accepts one host name. libpq allows a comma-separated list and tries each
/// in turn; a pggssenc connection is bound to one socket, so the caller must
/// name the host that socket is connected to.
fn parse_host(value: &str) -> Result<Option<String>, Error> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.contains(',') {
        return Err(invalid_value(
            "host",
            value,
            "a single host name (set host to the host this socket is connected to)",
        ));
    }
    if value.contains('\0') {
        return Err(invalid_value("host", value, "a host name without NUL bytes"));
    }
    Ok(Some(value.to_string()))
}

fn invalid_value(key: &str, value: &str, expected: &str) -> Error {
    Error::new(
        ErrorKind::InvalidParameter,
        format!("invalid value for parameter \"{key}\": \"{}\"; expected {expected}", value.escape_debug()),
    )
}

fn syntax_error(detail: String) -> Error {
    Error::new(ErrorKind::InvalidParameter, format!("invalid connection string: {detail}"))
}

/// Splits a libpq connection string into key/value pairs, in order.
pub fn parse_conninfo(conninfo: &str) -> Result<Vec<(String, String)>, Error> {
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = conninfo.strip_prefix(scheme) {
            return parse_uri(rest);
        }
    }
    parse_key_values(conninfo)
}

/// Parses the `key = value` form: values may be single-quoted, and a
/// backslash escapes the next character, as in libpq's conninfo_parse.
fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, Error> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();

    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(pairs);
        }

        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(syntax_error(format!("missing \"=\" after \"{}\"", key.escape_debug())));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }

        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(syntax_error(format!("unterminated quoted value for \"{key}\""))),
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(syntax_error(format!("unterminated quoted value for \"{key}\""))),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// Parses what follows the scheme of a URI:
/// `[user[:password]@][host][:port][,...][/dbname][?key=value&...]`.
fn parse_uri(rest: &str) -> Result<Vec<(String, String)>, Error> {
    let mut pairs = Vec::new();
    let (authority_and_path, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority = match authority_and_path.split_once('/') {
        Some((authority, _dbname)) => authority,
        None => authority_and_path,
    };
    let hosts = match authority.rsplit_once('@') {
        Some((_userinfo, hosts)) => hosts,
        None => authority,
    };

    let mut names = Vec::new();
    for entry in hosts.split(',') {
        let name = if let Some(bracketed) = entry.strip_prefix('[') {
            match bracketed.split_once(']') {
                Some((address, _port)) => address.to_string(),
                None => return Err(syntax_error(format!("missing \"]\" in IPv6 host \"{entry}\""))),
            }
        } else {
            let name = entry.split_once(':').map_or(entry, |(name, _port)| name);
            percent_decode(name)?
        };
        names.push(name);
    }
    if names.iter().any(|name| !name.is_empty()) {
        pairs.push(("host".to_string(), names.join(",")));
    }

    if let Some(query) = query {
        for parameter in query.split('&').filter(|p| !p.is_empty()) {
            let Some((key, value)) = parameter.split_once('=') else {
                return Err(syntax_error(format!("missing \"=\" in URI query parameter \"{parameter}\"")));
            };
            pairs.push((percent_decode(key)?, percent_decode(value)?));
        }
    }
    Ok(pairs)
}

fn percent_decode(text: &str) -> Result<String, Error> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                return Err(syntax_error(format!("invalid percent-encoded token in \"{text}\"")));
            };
            if value == 0 {
                return Err(syntax_error(format!("forbidden value %00 in percent-encoded value \"{text}\"")));
            }
            decoded.push(value);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| syntax_error(format!("percent-encoded value \"{text}\" is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn defaults_match_libpq() {
        let config = Config::from_lookup(env(&[])).unwrap();
        assert_eq!(config.host, None);
        assert_eq!(config.krbsrvname, "postgres");
        assert_eq!(config.gssencmode, GssEncMode::Prefer);
        assert!(!config.gssdelegation);
    }

    #[test]
    fn environment_sets_defaults() {
        let config = Config::from_lookup(env(&[
            ("PGHOST", "db.example.com"),
            ("PGKRBSRVNAME", "pgsvc"),
            ("PGGSSENCMODE", "require"),
            ("PGGSSDELEGATION", "1"),
        ]))
        .unwrap();
        assert_eq!(config.host.as_deref(), Some("db.example.com"));
        assert_eq!(config.krbsrvname, "pgsvc");
        assert_eq!(config.gssencmode, GssEncMode::Require);
        assert!(config.gssdelegation);
    }

    #[test]
    fn explicit_parameters_override_environment() {
        let mut config = Config::from_lookup(env(&[("PGGSSENCMODE", "require"), ("PGKRBSRVNAME", "a")])).unwrap();
        config.apply_conninfo("gssencmode=disable krbsrvname=b").unwrap();
        assert_eq!(config.gssencmode, GssEncMode::Disable);
        assert_eq!(config.krbsrvname, "b");
    }

    #[test]
    fn invalid_environment_value_names_variable() {
        let err = Config::from_lookup(env(&[("PGGSSENCMODE", "always")])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidParameter);
        assert_eq!(
            err.message(),
            "environment variable PGGSSENCMODE: invalid value for parameter \"gssencmode\": \"always\"; \
             expected \"disable\", \"prefer\" or \"require\""
        );
    }

    #[test]
    fn explicit_key_hides_invalid_environment_value() {
        let mut params = Params::new();
        params.set("gssencmode", "require").unwrap();
        let config = params.resolve(env(&[("PGGSSENCMODE", "bogus"), ("PGKRBSRVNAME", "fromenv")])).unwrap();
        assert_eq!(config.gssencmode, GssEncMode::Require);
        assert_eq!(config.krbsrvname, "fromenv");
    }

    #[test]
    fn params_reject_unknown_key_but_conninfo_ignores_it() {
        let mut params = Params::new();
        let err = params.set("sslmode", "require").unwrap_err();
        assert_eq!(
            err.message(),
            "unknown parameter \"sslmode\"; pggssenc uses host, krbsrvname, gssencmode, gssdelegation and ccache"
        );
        params.apply_conninfo("sslmode=require host=db1 dbname=x").unwrap();
        let config = params.resolve(env(&[])).unwrap();
        assert_eq!(config.host.as_deref(), Some("db1"));
    }

    #[test]
    fn invalid_conninfo_keeps_nothing() {
        let mut params = Params::new();
        assert!(params.apply_conninfo("host=db1 gssencmode=maybe").is_err());
        assert_eq!(params, Params::new());
    }

    #[test]
    fn key_value_form_with_quotes_and_escapes() {
        let pairs = parse_conninfo(" host = 'db host' port=5432 application_name='it\\'s' krbsrvname=a\\ b ").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("host".to_string(), "db host".to_string()),
                ("port".to_string(), "5432".to_string()),
                ("application_name".to_string(), "it's".to_string()),
                ("krbsrvname".to_string(), "a b".to_string()),
            ]
        );
    }

    #[test]
    fn key_value_errors() {
        assert_eq!(
            parse_conninfo("host").unwrap_err().message(),
            "invalid connection string: missing \"=\" after \"host\""
        );
        assert_eq!(
            parse_conninfo("host='abc").unwrap_err().message(),
            "invalid connection string: unterminated quoted value for \"host\""
        );
    }

    #[test]
    fn uri_form() {
        let mut config = Config::default();
        config
            .apply_conninfo("postgresql://alice:secret@db.example.com:5433/sales?gssencmode=require&krbsrvname=pg%2Dsvc&sslmode=disable&gssdelegation=1")
            .unwrap();
        assert_eq!(config.host.as_deref(), Some("db.example.com"));
        assert_eq!(config.gssencmode, GssEncMode::Require);
        assert_eq!(config.krbsrvname, "pg-svc");
        assert!(config.gssdelegation);
    }

    #[test]
    fn uri_ipv6_and_query_host() {
        let mut config = Config::default();
        config.apply_conninfo("postgres://[::1]:5432/db").unwrap();
        assert_eq!(config.host.as_deref(), Some("::1"));
        config.apply_conninfo("postgresql:///db?host=localhost").unwrap();
        assert_eq!(config.host.as_deref(), Some("localhost"));
    }

    #[test]
    fn multiple_hosts_rejected() {
        let mut config = Config::default();
        let err = config.apply_conninfo("postgresql://a:1,b:2/db").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidParameter);
        assert!(err.message().starts_with("invalid value for parameter \"host\": \"a,b\""), "{}", err.message());
    }

    #[test]
    fn invalid_values_rejected() {
        let mut config = Config::default();
        assert_eq!(
            config.set("gssdelegation", "yes").unwrap_err().message(),
            "invalid value for parameter \"gssdelegation\": \"yes\"; expected \"0\" or \"1\""
        );
        assert_eq!(config.set("krbsrvname", "").unwrap_err().kind(), ErrorKind::InvalidParameter);
        assert_eq!(parse_conninfo("postgresql://h/db?x=%4").unwrap_err().kind(), ErrorKind::InvalidParameter);
        assert!(!config.set("sslmode", "require").unwrap());
    }
}
