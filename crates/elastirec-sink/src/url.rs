//! Connection strings as they may be shown: [`redact_url`] hides passwords before a URL reaches
//! an error, a log line or a run record, and [`scrub`] removes a URL's password from text a
//! client library wrote (its errors are not ours to trust).
//!
//! Both URL forms (`scheme://user:password@host/…?password=…`) and libpq's `key=value` strings
//! (`host=db password='s e c'`) are understood; when in doubt more is hidden, never less.

/// What stands for a hidden password.
const HIDDEN: &str = "***";

/// `url` with its passwords replaced by `***`: `redis://user:***@host:6379/0`,
/// `postgresql://app:***@db/recs?sslmode=require`, `host=db password=***`.
///
/// The user name, host, port, path and the other parameters stay, so the message still says
/// where the sink went.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact_key_values(url);
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    // The user information ends at the last '@': a password may hold '/', '?' or '#' that its
    // writer forgot to encode, so the authority's end cannot be found before it.
    let (authority, tail) = match rest.rfind('@') {
        Some(at) => {
            let (userinfo, host_and_tail) = rest.split_at(at);
            let userinfo = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:{HIDDEN}"),
                None => userinfo.to_string(),
            };
            (userinfo, host_and_tail.to_string())
        }
        None => (String::new(), rest.to_string()),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}={HIDDEN}")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail,
    };
    format!("{scheme}{authority}{tail}")
}

/// `text` with every password of `url` (as written and percent-decoded) replaced by `***`.
pub fn scrub(text: impl std::fmt::Display, url: &str) -> String {
    let mut text = text.to_string();
    for secret in passwords(url) {
        if !secret.is_empty() {
            text = text.replace(&secret, HIDDEN);
        }
    }
    text
}

/// The passwords `url` holds, as written and percent-decoded.
fn passwords(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |raw: &str| {
        out.push(raw.to_string());
        let decoded = percent_decode(raw);
        if decoded != raw {
            out.push(decoded);
        }
    };
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        if let Some((userinfo, _)) = rest.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
        {
            push(password);
        }
        if let Some((_, query)) = rest.split_once('?') {
            for pair in query.split('&') {
                if let Some((key, value)) = pair.split_once('=')
                    && key.eq_ignore_ascii_case("password")
                {
                    push(value);
                }
            }
        }
    } else if let Some(pairs) = key_values(url) {
        for p in pairs.iter().filter(|p| p.key == "password") {
            // The quoted form first, so a quoted password goes whole with its quotes.
            push(&url[p.span.clone()]);
            push(&p.value);
        }
    }
    out
}

/// `%XX` sequences decoded (invalid ones kept as they are).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One `key=value` of a libpq connection string.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyValue {
    pub key: String,
    /// The value with quotes and escapes removed.
    pub value: String,
    /// Where the value (quotes included) is in the string.
    pub span: std::ops::Range<usize>,
    /// Where the whole `key = value` is in the string.
    pub whole: std::ops::Range<usize>,
}

/// The pairs of a libpq `key=value` string (values bare or in single quotes, `\'` and `\\`
/// escaped); `None` if it is not one.
pub(crate) fn key_values(s: &str) -> Option<Vec<KeyValue>> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let at = |i: usize| chars.get(i).map_or(s.len(), |c| c.0);
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while chars.get(i).is_some_and(|c| c.1.is_whitespace()) {
            i += 1;
        }
        if i >= chars.len() {
            return Some(out);
        }
        let start = i;
        while chars
            .get(i)
            .is_some_and(|c| c.1 != '=' && !c.1.is_whitespace())
        {
            i += 1;
        }
        let key = s[at(start)..at(i)].to_string();
        while chars.get(i).is_some_and(|c| c.1.is_whitespace()) {
            i += 1;
        }
        if key.is_empty() || chars.get(i).map(|c| c.1) != Some('=') {
            return None;
        }
        i += 1;
        while chars.get(i).is_some_and(|c| c.1.is_whitespace()) {
            i += 1;
        }
        let value_start = i;
        let mut value = String::new();
        if chars.get(i).map(|c| c.1) == Some('\'') {
            i += 1;
            loop {
                match chars.get(i).map(|c| c.1) {
                    None => return None,
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        value.push(chars.get(i + 1)?.1);
                        i += 2;
                    }
                    Some(c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(&(_, c)) = chars.get(i).filter(|c| !c.1.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.get(i + 1)?.1);
                    i += 2;
                } else {
                    value.push(c);
                    i += 1;
                }
            }
        }
        out.push(KeyValue {
            key,
            value,
            span: at(value_start)..at(i),
            whole: at(start)..at(i),
        });
    }
}

/// A libpq `key=value` string with the values of `password` replaced by `***`; a string that
/// does not parse is hidden whole if it mentions a password.
fn redact_key_values(s: &str) -> String {
    let Some(pairs) = key_values(s) else {
        return if s.to_ascii_lowercase().contains("password") {
            format!("(a connection string with a password, {HIDDEN})")
        } else {
            s.to_string()
        };
    };
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for p in pairs.iter().filter(|p| p.key == "password") {
        out.push_str(&s[last..p.span.start]);
        out.push_str(HIDDEN);
        last = p.span.end;
    }
    out.push_str(&s[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::{key_values, redact_url, scrub};

    #[test]
    fn redact_url_hides_the_password_and_keeps_where_it_goes() {
        assert_eq!(
            redact_url("redis://user:s3cr%2Ft@host:6380/2"),
            "redis://user:***@host:6380/2"
        );
        assert_eq!(redact_url("rediss://:pw@host"), "rediss://:***@host");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("redis://alice@host"), "redis://alice@host");
        // A password holding characters a URL reserves, not encoded.
        assert_eq!(redact_url("redis://:p/a?s#s@host/0"), "redis://:***@host/0");
        assert_eq!(
            redact_url("postgresql://app:pw@db:5432/recs?sslmode=require&password=x2"),
            "postgresql://app:***@db:5432/recs?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("host=db user=app password='s e\\'c' dbname=recs"),
            "host=db user=app password=*** dbname=recs"
        );
        assert_eq!(
            redact_url("host=db password = pw"),
            "host=db password = ***"
        );
        assert!(!redact_url("host=db password='unterminated").contains("unterminated"));
    }

    #[test]
    fn scrub_removes_a_password_a_client_echoed() {
        let url = "redis://u:p%40ss@host";
        assert_eq!(
            scrub("auth failed for p%40ss (p@ss)", url),
            "auth failed for *** (***)"
        );
        assert_eq!(
            scrub("no password here", "redis://host"),
            "no password here"
        );
        assert_eq!(scrub("bad 'x y'", "host=h password='x y'"), "bad ***");
    }

    #[test]
    fn key_values_reads_quoted_and_bare_values() {
        let kv = key_values("host=h  sslrootcert='/a b/c.pem' x=1").unwrap();
        let pairs: Vec<(&str, &str)> = kv
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("host", "h"), ("sslrootcert", "/a b/c.pem"), ("x", "1")]
        );
        assert!(key_values("just words").is_none());
    }
}
