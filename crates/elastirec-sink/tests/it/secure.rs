//! What the sinks do with credentials, TLS, slow or broken servers, and erasure: a Redis with a
//! password (a `redis-server` this test starts), PostgreSQL's TLS modes against the local
//! server (which has `ssl = on`), listeners that accept and never answer or answer nonsense,
//! and `forget_users` on both targets.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use elastirec_core::ErrorKind;
use elastirec_core::config::{SinkConfig, SinkTarget};
use elastirec_sink::{SinkErasure, copy_night, forget_users, redact_url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixture::{self, NIGHT1, night};

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{}_{nanos}", std::process::id())
}

/// A port nothing listens on now (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` this test started; killed when dropped.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Starts `redis-server` on a free port with `--requirepass password`; `None` (and a message
/// saying why the test is skipped) when there is no `redis-server` on PATH.
async fn own_redis(password: &str) -> Option<OwnRedis> {
    let port = free_port();
    let child = match Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--requirepass",
            password,
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: redis-server is not on PATH, so the AUTH test cannot run");
            return None;
        }
        Err(e) => panic!("cannot start redis-server: {e}"),
    };
    let server = OwnRedis { child, port };
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "redis-server did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(server)
}

fn redis_config(url: String) -> SinkConfig {
    SinkConfig {
        target: SinkTarget::Redis,
        redis_url: url,
        redis_key_prefix: unique("elastirec-test:"),
        ttl_seconds: 600,
        timeout_seconds: 5,
        ..SinkConfig::default()
    }
}

async fn hget(url: &str, key: &str, field: &str) -> Option<String> {
    let mut redis = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async(&mut redis)
        .await
        .unwrap()
}

#[tokio::test]
async fn redis_auth_refuses_a_wrong_password_without_showing_it_and_writes_with_the_right_one() {
    let password = "s3cret-Pa55-wörd";
    let Some(server) = own_redis(password).await else {
        return;
    };
    let f = fixture::published().await;
    let port = server.port;

    // A wrong password: refused, not worth retrying, and the message shows neither password.
    let wrong = "wrong-Pa55-xyz";
    let config = redis_config(format!("redis://default:{wrong}@127.0.0.1:{port}/0"));
    let err = copy_night(&f.lake, &config, night(NIGHT1))
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(wrong) && !text.contains(password), "{text}");
    assert!(
        text.contains(&format!("redis://default:***@127.0.0.1:{port}/0")),
        "{text}"
    );
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{text}");

    // No password at all: the server's NOAUTH.
    let config = redis_config(format!("redis://127.0.0.1:{port}"));
    let err = copy_night(&f.lake, &config, night(NIGHT1))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("sink redis"), "{err}");

    // The right one (percent-encoded where a URL needs it) writes every user's hash.
    let encoded = "s3cret-Pa55-w%C3%B6rd";
    let url = format!("redis://:{encoded}@127.0.0.1:{port}");
    let config = redis_config(url.clone());
    let report = copy_night(&f.lake, &config, night(NIGHT1)).await.unwrap();
    assert_eq!((report.users, report.rows), (2, 4));
    let key7 = format!("{}7", config.redis_key_prefix);
    assert_eq!(hget(&url, &key7, "night").await.as_deref(), Some(NIGHT1));

    // forget deletes the user's key there too, and a rerun finds nothing more.
    let erased = forget_users(&config, &["7".to_string(), "nobody".to_string()])
        .await
        .unwrap();
    assert_eq!(
        erased,
        Some(SinkErasure {
            target: "redis",
            deleted: 1
        })
    );
    assert_eq!(hget(&url, &key7, "night").await, None);
    let key8 = format!("{}8", config.redis_key_prefix);
    assert_eq!(hget(&url, &key8, "night").await.as_deref(), Some(NIGHT1));
    let again = forget_users(&config, &["7".to_string()]).await.unwrap();
    assert_eq!(again.map(|e| e.deleted), Some(0));
    drop(server);
}

/// `rediss://` speaks TLS and checks the server's certificate against the system's roots: a
/// `redis-server --tls-port` with a self-signed certificate made here is refused (a certificate
/// error, not a panic for want of a crypto provider), without the password in the message.
#[tokio::test]
async fn rediss_checks_the_servers_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: openssl cannot make a test certificate, so the rediss test cannot run");
        return;
    }
    let port = free_port();
    let child = match Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .args(["--tls-auth-clients", "no", "--requirepass", "tls-pw-9"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: redis-server is not on PATH, so the rediss test cannot run");
            return;
        }
        Err(e) => panic!("cannot start redis-server: {e}"),
    };
    let _server = OwnRedis { child, port };
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(10) {
            eprintln!("SKIPPED: this redis-server does not listen with TLS (built without it?)");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let f = fixture::published().await;
    let config = redis_config(format!("rediss://:tls-pw-9@localhost:{port}"));
    let err = copy_night(&f.lake, &config, night(NIGHT1))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(!err.contains("tls-pw-9"), "{err}");
    assert!(
        err.contains(&format!("rediss://:***@localhost:{port}")),
        "{err}"
    );
}

/// Ids whose first character is more than one byte (the hand-written client split a reply line
/// after its first byte, which panicked on such a character).
#[tokio::test]
async fn ids_that_start_with_a_multibyte_character_reach_redis_and_are_forgotten() {
    let f = fixture::lake().await;
    let rows = [
        ("é-user", "ü-item", 1, 0.9, "als"),
        ("😀", "日本", 1, 0.5, "popular"),
    ];
    crate::sink::write_lists(&f.lake, night(NIGHT1), &rows, false).await;
    let config = redis_config("redis://127.0.0.1:6379".into());
    copy_night(&f.lake, &config, night(NIGHT1)).await.unwrap();
    let url = config.redis_url.clone();
    let key = format!("{}é-user", config.redis_key_prefix);
    let items = hget(&url, &key, "items").await.unwrap();
    assert!(items.starts_with("[{\"item_id\":\"ü-item\""), "{items}");
    let emoji = format!("{}😀", config.redis_key_prefix);
    assert_eq!(
        hget(&url, &emoji, "source").await.as_deref(),
        Some("popular")
    );
    let erased = forget_users(&config, &["é-user".into(), "😀".into()])
        .await
        .unwrap();
    assert_eq!(erased.map(|e| e.deleted), Some(2));
    assert_eq!(hget(&url, &key, "items").await, None);
    assert_eq!(hget(&url, &emoji, "items").await, None);
}

/// A listener that accepts connections, reads what comes, answers `reply` once (nothing if
/// empty) and then holds the connection without a word more.
async fn listener_answering(reply: &'static [u8]) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut answered = reply.is_empty();
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if !answered {
                        answered = true;
                        socket.write_all(reply).await.ok();
                    }
                }
            });
        }
    });
    port
}

/// Runs a copy to `config` and checks it failed as transient within its timeout (plus slack for
/// a loaded machine), naming the target without its password.
async fn fails_in_time(config: &SinkConfig, secret: &str) -> String {
    let f = fixture::published().await;
    let started = Instant::now();
    let err = copy_night(&f.lake, config, night(NIGHT1))
        .await
        .unwrap_err();
    let took = started.elapsed();
    let text = err.to_string();
    assert!(
        took < Duration::from_secs(config.timeout_seconds) + Duration::from_secs(3),
        "took {took:?}: {text}"
    );
    assert!(!text.contains(secret), "{text}");
    text
}

#[tokio::test]
async fn a_redis_that_never_answers_fails_within_the_timeout() {
    let port = listener_answering(b"").await;
    let mut config = redis_config(format!("redis://:hush-pw@127.0.0.1:{port}"));
    config.timeout_seconds = 1;
    let err = fails_in_time(&config, "hush-pw").await;
    assert!(err.contains("redis://:***@127.0.0.1"), "{err}");
    assert!(
        err.contains("no answer within 1 s") || err.to_lowercase().contains("timed out"),
        "{err}"
    );
}

#[tokio::test]
async fn a_redis_answering_nonsense_fails_instead_of_panicking() {
    // A reply line whose first character is two bytes, and a bulk string announcing more bytes
    // than could be allocated: an error (or the timeout), never a panic or an abort.
    for reply in [&b"\xc3\xa9oops\r\n"[..], &b"$999999999999999\r\n"[..]] {
        let reply: &'static [u8] = reply;
        let port = listener_answering(reply).await;
        let mut config = redis_config(format!("redis://127.0.0.1:{port}"));
        config.timeout_seconds = 2;
        let err = fails_in_time(&config, "\0").await;
        assert!(err.contains("sink redis"), "{err}");
    }
}

#[tokio::test]
async fn a_postgres_that_never_answers_fails_within_the_timeout() {
    let port = listener_answering(b"").await;
    let config = SinkConfig {
        target: SinkTarget::Postgres,
        postgres_url: format!("postgresql://app:pg-hush@127.0.0.1:{port}/test"),
        postgres_table: unique("elastirec_test_"),
        timeout_seconds: 1,
        ..SinkConfig::default()
    };
    let err = fails_in_time(&config, "pg-hush").await;
    assert!(err.contains("postgresql://app:***@127.0.0.1"), "{err}");
    assert!(err.contains("no answer within 1 s"), "{err}");
}

fn pg_config(url: &str) -> SinkConfig {
    SinkConfig {
        target: SinkTarget::Postgres,
        postgres_url: url.into(),
        postgres_table: unique("elastirec_test_"),
        timeout_seconds: 10,
        ..SinkConfig::default()
    }
}

async fn pg_client() -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&SinkConfig::default().postgres_url, tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
}

/// The local server's certificate file when it has TLS on and the file is readable here.
async fn server_certificate(client: &tokio_postgres::Client) -> Option<String> {
    let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    let file: String = client
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .unwrap()
        .get(0);
    (ssl == "on" && std::fs::read(&file).is_ok()).then_some(file)
}

#[tokio::test]
async fn postgres_tls_modes_encrypt_and_verify_full_checks_the_certificate() {
    let f = fixture::published().await;
    let client = pg_client().await;
    let Some(cert) = server_certificate(&client).await else {
        eprintln!(
            "SKIPPED: the local PostgreSQL has no TLS (ssl = off) or its certificate is unreadable"
        );
        return;
    };
    let lake = &f.lake;
    let copied = |url: String| async move {
        let config = pg_config(&url);
        let r = copy_night(lake, &config, night(NIGHT1)).await;
        (r, config.postgres_table)
    };
    // Encrypted without checking the certificate, as libpq does for require and prefer.
    for mode in ["require", "prefer", "disable"] {
        let (r, table) = copied(format!(
            "postgresql://postgres@127.0.0.1:5432/test?sslmode={mode}"
        ))
        .await;
        assert_eq!(r.unwrap().rows, 4, "sslmode={mode}");
        let n: i64 = client
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 4);
        client
            .batch_execute(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
    }
    // verify-full with the server's own certificate as the root: its name is localhost.
    let name = cert_common_name(&cert);
    if name.as_deref() == Some("localhost") {
        let (r, table) = copied(format!(
            "host=localhost port=5432 user=postgres dbname=test sslmode=verify-full \
             sslrootcert='{cert}'"
        ))
        .await;
        assert_eq!(r.unwrap().rows, 4);
        client
            .batch_execute(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
    }
    // ...but not under another name (an IP address the certificate does not hold)...
    let (r, _) = copied(format!(
        "postgresql://postgres:pw-not-shown@127.0.0.1:5432/test?sslmode=verify-full&sslrootcert={cert}"
    ))
    .await;
    let err = r.unwrap_err();
    let text = err.to_string();
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(!text.contains("pw-not-shown"), "{text}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{text}");
    // ...nor against the system's roots, which do not hold a self-signed certificate.
    let (r, _) =
        copied("postgresql://postgres@localhost:5432/test?sslmode=verify-full".into()).await;
    let text = r.unwrap_err().to_string();
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

/// The subject's CN of a PEM certificate, read with `openssl` (only to decide whether the
/// verify-full success case applies to this server's certificate).
fn cert_common_name(file: &str) -> Option<String> {
    let out = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "multiline",
            "-in",
            file,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("commonName")
            .map(|v| v.trim_start_matches([' ', '=']).trim().to_string())
    })
}

#[tokio::test]
async fn postgres_errors_hide_the_password() {
    let f = fixture::published().await;
    let port = free_port();
    let config = pg_config(&format!(
        "postgresql://postgres:pg-s3cret@127.0.0.1:{port}/test?sslmode=disable"
    ));
    let err = copy_night(&f.lake, &config, night(NIGHT1))
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("pg-s3cret"), "{text}");
    assert!(text.contains("postgres:***@127.0.0.1"), "{text}");
    assert_eq!(err.kind(), ErrorKind::Transient, "{text}");
    assert_eq!(
        redact_url("host=db password='pg s3cret' user=x"),
        "host=db password=*** user=x"
    );
}

#[tokio::test]
async fn forget_deletes_the_users_rows_from_postgres() {
    let f = fixture::published().await;
    let config = pg_config("postgresql://postgres@127.0.0.1:5432/test");
    // Before any copy the table does not exist: nothing to delete, no error.
    let none = forget_users(&config, &["7".into()]).await.unwrap();
    assert_eq!(none.map(|e| e.deleted), Some(0));
    copy_night(&f.lake, &config, night(NIGHT1)).await.unwrap();
    let erased = forget_users(&config, &["7".into(), "nobody".into()])
        .await
        .unwrap();
    assert_eq!(
        erased,
        Some(SinkErasure {
            target: "postgres",
            deleted: 3
        })
    );
    let client = pg_client().await;
    let table = &config.postgres_table;
    let users: Vec<String> = client
        .query(&format!("SELECT DISTINCT user_id FROM {table}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(users, ["8"]);
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    // No target: nothing to do.
    assert_eq!(
        forget_users(&SinkConfig::default(), &["7".into()])
            .await
            .unwrap(),
        None
    );
}
