//! Unit tests of the configuration: every source, every setting, every message.

use std::collections::HashMap;
use std::error::Error as _;
use std::net::{IpAddr, Ipv4Addr};

use std::ffi::{OsStr, OsString};
use std::io;
use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use taskward_http::protocol::{self, MAX_SECONDS};

use super::bind;
use super::settings::Key;
use super::values::Raw;
use super::*;
use crate::temp_dir::TempDir;

/// A temp dir holding one file.
fn with_file(name: &str, text: &str) -> TempDir {
    let dir = TempDir::new("config");
    std::fs::write(dir.path().join(name), text).expect("the temp dir is writable");
    dir
}

fn flags() -> ServeFlags {
    ServeFlags {
        program: vec!["app".into(), "--flag".into()],
        ..ServeFlags::default()
    }
}

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
    let vars: HashMap<String, OsString> = vars
        .iter()
        .map(|&(name, value)| (name.to_owned(), value.into()))
        .collect();
    move |name| vars.get(name).cloned()
}

fn no_env() -> impl Fn(&str) -> Option<OsString> {
    |_| None
}

/// The message of the error `load` returns.
fn error(flags: ServeFlags, env: impl Fn(&str) -> Option<OsString>, cwd: &Path) -> String {
    ServeConfig::load(flags, env, cwd)
        .expect_err("the configuration is bad")
        .to_string()
}

fn tcp(addr: &str) -> BindAddr {
    BindAddr::Tcp(addr.parse().expect("a socket address literal"))
}

#[test]
fn defaults() {
    let dir = TempDir::new("config");
    let config = ServeConfig::load(flags(), no_env(), dir.path()).expect("defaults are valid");
    assert_eq!(
        config,
        ServeConfig {
            bind: vec![BindAddr::Tcp(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                8000
            ))],
            workers: NonZeroUsize::MIN,
            timeout: Some(Duration::from_secs(30)),
            graceful_timeout: Duration::from_secs(30),
            max_requests: None,
            backlog: 2048,
            admin_socket: None,
            reload_timeout: Duration::from_secs(60),
            program: "app".into(),
            args: vec!["--flag".into()],
        }
    );
}

#[test]
fn flag_beats_file_beats_env_beats_default() {
    let dir = with_file(DEFAULT_CONFIG_FILE, "workers = 3\n");
    let empty = TempDir::new("config");
    let env = env(&[("TASKWARD_WORKERS", "2")]);
    let load = |flags, cwd: &Path| {
        ServeConfig::load(flags, &env, cwd)
            .expect("valid")
            .workers
            .get()
    };
    let with_flag = ServeFlags {
        workers: Some("4".into()),
        ..flags()
    };

    assert_eq!(load(with_flag, dir.path()), 4);
    assert_eq!(load(flags(), dir.path()), 3);
    assert_eq!(load(flags(), empty.path()), 2);
    let default = ServeConfig::load(flags(), no_env(), empty.path()).expect("valid");
    assert_eq!(default.workers.get(), 1);
}

#[test]
fn layers_replace_per_key_and_bind_as_a_whole() {
    let dir = with_file(
        "serve.toml",
        "bind = [\"127.0.0.1:1\", \"unix:/tmp/a.sock\"]\ntimeout = 5\n",
    );
    let flags = ServeFlags {
        bind: vec!["127.0.0.1:2".into()],
        config: Some("serve.toml".into()),
        ..flags()
    };
    let env = env(&[
        ("TASKWARD_TIMEOUT", "7"),
        ("TASKWARD_GRACEFUL_TIMEOUT", "0.25"),
    ]);
    let config = ServeConfig::load(flags, env, dir.path()).expect("valid");
    assert_eq!(config.bind, vec![tcp("127.0.0.1:2")]);
    assert_eq!(config.timeout, Some(Duration::from_secs(5)));
    assert_eq!(config.graceful_timeout, Duration::from_millis(250));
}

#[test]
fn every_setting_from_the_file() {
    let dir = with_file(
        DEFAULT_CONFIG_FILE,
        r#"
            bind = ["[::1]:8080", "unix:/run/app.sock"]
            workers = 8
            timeout = 0
            graceful_timeout = 2.5
            max_requests = 1_000
            max_requests_jitter = 0x10
            backlog = 64
            admin_socket = "/run/admin.sock"
            reload_timeout = 90
        "#,
    );
    let config = ServeConfig::load(flags(), no_env(), dir.path()).expect("valid");
    assert_eq!(
        config.bind,
        vec![tcp("[::1]:8080"), BindAddr::Unix("/run/app.sock".into())]
    );
    assert_eq!(config.workers.get(), 8);
    assert_eq!(config.timeout, None, "0 disables the heartbeat timeout");
    assert_eq!(config.graceful_timeout, Duration::from_millis(2500));
    assert_eq!(
        config.max_requests,
        Some(MaxRequests {
            limit: NonZeroU64::new(1000).expect("not zero"),
            jitter: 16,
        })
    );
    assert_eq!(config.backlog, 64);
    assert_eq!(config.admin_socket, Some("/run/admin.sock".into()));
    assert_eq!(config.reload_timeout, Duration::from_secs(90));
}

#[test]
fn every_setting_from_the_environment() {
    let dir = TempDir::new("config");
    let env = env(&[
        ("TASKWARD_BIND", "127.0.0.1:8000, unix:/tmp/x.sock"),
        ("TASKWARD_WORKERS", "4"),
        ("TASKWARD_TIMEOUT", "1.5"),
        ("TASKWARD_GRACEFUL_TIMEOUT", "3"),
        ("TASKWARD_MAX_REQUESTS", "500"),
        ("TASKWARD_MAX_REQUESTS_JITTER", "20"),
        ("TASKWARD_BACKLOG", "0"),
        ("TASKWARD_ADMIN_SOCKET", "admin.sock"),
        ("TASKWARD_RELOAD_TIMEOUT", "10"),
    ]);
    let config = ServeConfig::load(flags(), env, dir.path()).expect("valid");
    assert_eq!(
        config.bind,
        vec![tcp("127.0.0.1:8000"), BindAddr::Unix("/tmp/x.sock".into())]
    );
    assert_eq!(config.workers.get(), 4);
    assert_eq!(config.timeout, Some(Duration::from_millis(1500)));
    assert_eq!(config.graceful_timeout, Duration::from_secs(3));
    let recycling = config.max_requests.expect("set");
    assert_eq!((recycling.limit.get(), recycling.jitter), (500, 20));
    assert_eq!(config.backlog, 0);
    assert_eq!(config.admin_socket, Some("admin.sock".into()));
    assert_eq!(config.reload_timeout, Duration::from_secs(10));
}

#[test]
fn every_setting_from_flags() {
    let dir = TempDir::new("config");
    let flags = ServeFlags {
        bind: vec!["0.0.0.0:0".into(), "unix:rel.sock".into()],
        workers: Some("2".into()),
        timeout: Some("0".into()),
        graceful_timeout: Some("0".into()),
        max_requests: Some("0".into()),
        max_requests_jitter: Some("5".into()),
        backlog: Some("2147483647".into()),
        admin_socket: Some("/tmp/admin".into()),
        reload_timeout: Some("0.5".into()),
        ..flags()
    };
    let config = ServeConfig::load(flags, no_env(), dir.path()).expect("valid");
    assert_eq!(
        config.bind,
        vec![tcp("0.0.0.0:0"), BindAddr::Unix("rel.sock".into())]
    );
    assert_eq!(config.workers.get(), 2);
    assert_eq!(config.timeout, None);
    assert_eq!(config.graceful_timeout, Duration::ZERO);
    assert_eq!(
        config.max_requests, None,
        "jitter without max_requests is accepted and has no effect"
    );
    assert_eq!(config.backlog, 2_147_483_647);
    assert_eq!(config.admin_socket, Some("/tmp/admin".into()));
    assert_eq!(config.reload_timeout, Duration::from_millis(500));
}

#[test]
#[expect(
    clippy::needless_update,
    reason = "a setting added to the table later needs no field here (every_flag_parses_with_clap covers it)"
)]
fn clap_parses_the_documented_flags() {
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeFlags,
    }

    let cli = Cli::try_parse_from([
        "taskward",
        "-b",
        "127.0.0.1:1",
        "--bind",
        "unix:/x",
        "-w",
        "3",
        "-t",
        "9",
        "-c",
        "x.toml",
        "--graceful-timeout",
        "1",
        "--max-requests",
        "10",
        "--max-requests-jitter",
        "2",
        "--backlog",
        "5",
        "--admin-socket",
        "/a",
        "--reload-timeout",
        "7",
        "--",
        "prog",
        "-w",
        "arg",
    ])
    .expect("the flags parse");
    assert_eq!(
        cli.serve,
        ServeFlags {
            bind: vec!["127.0.0.1:1".into(), "unix:/x".into()],
            workers: Some("3".into()),
            timeout: Some("9".into()),
            graceful_timeout: Some("1".into()),
            max_requests: Some("10".into()),
            max_requests_jitter: Some("2".into()),
            backlog: Some("5".into()),
            config: Some("x.toml".into()),
            admin_socket: Some("/a".into()),
            reload_timeout: Some("7".into()),
            program: vec!["prog".into(), "-w".into(), "arg".into()],
            ..ServeFlags::default()
        }
    );
    assert!(
        Cli::try_parse_from(["taskward", "-w", "2"]).is_err(),
        "the program is required"
    );
}

#[test]
fn bad_values_from_flags() {
    let dir = TempDir::new("config");
    let cases: [(ServeFlags, &str); 10] = [
        (
            ServeFlags {
                workers: Some("two".into()),
                ..flags()
            },
            r#"flag --workers: workers: expected an integer from 1 to 512, found "two""#,
        ),
        (
            ServeFlags {
                workers: Some("0".into()),
                ..flags()
            },
            r#"flag --workers: workers: expected an integer from 1 to 512, found "0""#,
        ),
        (
            ServeFlags {
                timeout: Some("-1".into()),
                ..flags()
            },
            r#"flag --timeout: timeout: expected 0 (off) or a number of seconds from 0.001 to 31536000, found "-1""#,
        ),
        (
            ServeFlags {
                graceful_timeout: Some("inf".into()),
                ..flags()
            },
            r#"flag --graceful-timeout: graceful_timeout: expected a number of seconds from 0 to 31536000, found "inf""#,
        ),
        (
            ServeFlags {
                max_requests: Some("1e3".into()),
                ..flags()
            },
            r#"flag --max-requests: max_requests: expected a non-negative integer, found "1e3""#,
        ),
        (
            ServeFlags {
                max_requests_jitter: Some("-5".into()),
                ..flags()
            },
            r#"flag --max-requests-jitter: max_requests_jitter: expected a non-negative integer, found "-5""#,
        ),
        (
            ServeFlags {
                backlog: Some("2147483648".into()),
                ..flags()
            },
            r#"flag --backlog: backlog: expected an integer from 0 to 2147483647, found "2147483648""#,
        ),
        (
            ServeFlags {
                admin_socket: Some("".into()),
                ..flags()
            },
            r#"flag --admin-socket: admin_socket: expected a non-empty path, found """#,
        ),
        (
            ServeFlags {
                reload_timeout: Some("0".into()),
                ..flags()
            },
            r#"flag --reload-timeout: reload_timeout: expected a number of seconds above 0, at most 31536000, found "0""#,
        ),
        (
            ServeFlags {
                bind: vec!["8000".into()],
                ..flags()
            },
            r#"flag --bind: bind: expected HOST:PORT or unix:PATH, found "8000""#,
        ),
    ];
    for (flags, message) in cases {
        assert_eq!(error(flags, no_env(), dir.path()), message);
    }
}

#[test]
fn bad_values_from_the_file_name_the_line() {
    let cases = [
        (
            "# comment\n\nworkers = \"two\"\n",
            r#"taskward.toml:3: workers: expected an integer from 1 to 512, found "two""#,
        ),
        (
            "workers = 0",
            "taskward.toml:1: workers: expected an integer from 1 to 512, found 0",
        ),
        (
            "workers = 1.5",
            "taskward.toml:1: workers: expected an integer from 1 to 512, found 1.5",
        ),
        (
            "timeout = -1",
            "taskward.toml:1: timeout: expected 0 (off) or a number of seconds from 0.001 to 31536000, found -1",
        ),
        (
            "graceful_timeout = nan",
            "taskward.toml:1: graceful_timeout: expected a number of seconds from 0 to 31536000, found nan",
        ),
        (
            "timeout = \"30\"",
            r#"taskward.toml:1: timeout: expected 0 (off) or a number of seconds from 0.001 to 31536000, found "30""#,
        ),
        (
            "max_requests = true",
            "taskward.toml:1: max_requests: expected a non-negative integer, found true",
        ),
        (
            "max_requests_jitter = [1]",
            "taskward.toml:1: max_requests_jitter: expected a non-negative integer, found an array",
        ),
        (
            "backlog = -1",
            "taskward.toml:1: backlog: expected an integer from 0 to 2147483647, found -1",
        ),
        (
            "admin_socket = 5",
            "taskward.toml:1: admin_socket: expected a non-empty path, found 5",
        ),
        (
            "reload_timeout = 0.0",
            "taskward.toml:1: reload_timeout: expected a number of seconds above 0, at most 31536000, found 0.0",
        ),
        (
            "bind = [\n  \"127.0.0.1:1\",\n  \"nope\",\n]",
            r#"taskward.toml:3: bind: expected HOST:PORT or unix:PATH, found "nope""#,
        ),
        (
            "bind = [\n  \"127.0.0.1:1\",\n  8000,\n]",
            "taskward.toml:3: bind: expected HOST:PORT or unix:PATH, found 8000",
        ),
        (
            "bind = []",
            "taskward.toml:1: bind: expected at least one address, found an empty array",
        ),
        (
            "bind = { host = \"x\" }",
            "taskward.toml:1: bind: expected an address or an array of addresses, found a table",
        ),
    ];
    for (text, message) in cases {
        let dir = with_file(DEFAULT_CONFIG_FILE, text);
        assert_eq!(
            error(flags(), no_env(), dir.path()),
            message,
            "file: {text:?}"
        );
    }
}

#[test]
fn bad_values_from_the_environment() {
    let dir = TempDir::new("config");
    let cases = [
        (
            ("TASKWARD_WORKERS", "two"),
            r#"environment variable TASKWARD_WORKERS: workers: expected an integer from 1 to 512, found "two""#,
        ),
        (
            ("TASKWARD_WORKERS", ""),
            r#"environment variable TASKWARD_WORKERS: workers: expected an integer from 1 to 512, found """#,
        ),
        (
            ("TASKWARD_TIMEOUT", "30s"),
            r#"environment variable TASKWARD_TIMEOUT: timeout: expected 0 (off) or a number of seconds from 0.001 to 31536000, found "30s""#,
        ),
        (
            ("TASKWARD_GRACEFUL_TIMEOUT", "-0.5"),
            r#"environment variable TASKWARD_GRACEFUL_TIMEOUT: graceful_timeout: expected a number of seconds from 0 to 31536000, found "-0.5""#,
        ),
        (
            ("TASKWARD_MAX_REQUESTS", "+5"),
            r#"environment variable TASKWARD_MAX_REQUESTS: max_requests: expected a non-negative integer, found "+5""#,
        ),
        (
            ("TASKWARD_MAX_REQUESTS_JITTER", "18446744073709551616"),
            r#"environment variable TASKWARD_MAX_REQUESTS_JITTER: max_requests_jitter: expected a non-negative integer, found "18446744073709551616""#,
        ),
        (
            ("TASKWARD_BACKLOG", "lots"),
            r#"environment variable TASKWARD_BACKLOG: backlog: expected an integer from 0 to 2147483647, found "lots""#,
        ),
        (
            ("TASKWARD_ADMIN_SOCKET", ""),
            r#"environment variable TASKWARD_ADMIN_SOCKET: admin_socket: expected a non-empty path, found """#,
        ),
        (
            ("TASKWARD_RELOAD_TIMEOUT", "soon"),
            r#"environment variable TASKWARD_RELOAD_TIMEOUT: reload_timeout: expected a number of seconds above 0, at most 31536000, found "soon""#,
        ),
        (
            ("TASKWARD_BIND", "127.0.0.1:8000,,unix:/x"),
            r#"environment variable TASKWARD_BIND: bind: expected HOST:PORT or unix:PATH, found """#,
        ),
    ];
    for ((name, value), message) in cases {
        assert_eq!(error(flags(), env(&[(name, value)]), dir.path()), message);
    }
}

#[test]
fn non_utf8_environment_values_are_errors_not_ignored() {
    let dir = TempDir::new("config");
    let env = |name: &str| {
        (name == "TASKWARD_WORKERS").then(|| OsString::from(OsStr::from_bytes(b"\xff")))
    };
    assert_eq!(
        error(flags(), env, dir.path()),
        r#"environment variable TASKWARD_WORKERS: workers: expected an integer from 1 to 512, found "\xFF""#
    );
}

#[test]
fn bind_addresses() {
    let ok = |text: &str| {
        bind::parse(Raw::Text(OsStr::new(text)))
            .ok()
            .unwrap_or_else(|| panic!("{text:?} is a valid address"))
    };
    assert_eq!(ok("127.0.0.1:8000"), tcp("127.0.0.1:8000"));
    assert_eq!(ok("[::]:0"), tcp("[::]:0"));
    assert_eq!(
        ok("unix:/tmp/a b.sock"),
        BindAddr::Unix("/tmp/a b.sock".into())
    );
    // A host name is kept as a name: resolving it is for listen::bind_all (no DNS while
    // loading).
    assert_eq!(
        ok("localhost:8000"),
        BindAddr::Host {
            host: "localhost".into(),
            port: 8000
        }
    );

    let bad = |text: &str| match bind::parse(Raw::Text(OsStr::new(text))) {
        Err(expected) => format!("{expected}, found {text:?}"),
        Ok(addr) => panic!("{text:?} parsed as {addr}"),
    };
    for text in [
        "", "unix:", "host", ":8000", "::1:8000", "[::1]", "host:", "host:x",
    ] {
        assert_eq!(
            bad(text),
            format!("HOST:PORT or unix:PATH, found {text:?}"),
            "{text:?}"
        );
    }
    assert_eq!(
        bad("localhost:65536"),
        r#"a port from 0 to 65535, found "localhost:65536""#
    );
    let long = format!("unix:/{}", "x".repeat(107));
    assert_eq!(
        bad(&long),
        format!("a unix socket path of at most 107 bytes, found {long:?}")
    );
    assert_eq!(
        ok(&format!("unix:/{}", "x".repeat(106))),
        BindAddr::Unix(format!("/{}", "x".repeat(106)).into())
    );
}

#[test]
fn duplicate_bind_addresses_are_refused() {
    let dir = TempDir::new("config");
    let flags = ServeFlags {
        bind: vec!["127.0.0.1:9".into(), "127.0.0.1:9".into()],
        ..flags()
    };
    assert_eq!(
        error(flags, no_env(), dir.path()),
        r#"flag --bind: bind: expected each address once, found "127.0.0.1:9" twice"#
    );
}

#[test]
fn a_bad_value_is_an_error_even_when_overridden() {
    let dir = TempDir::new("config");
    let flags = ServeFlags {
        workers: Some("4".into()),
        ..flags()
    };
    assert_eq!(
        error(flags, env(&[("TASKWARD_WORKERS", "four")]), dir.path()),
        r#"environment variable TASKWARD_WORKERS: workers: expected an integer from 1 to 512, found "four""#
    );
}

#[test]
fn unknown_keys_name_the_line() {
    let cases = [
        (
            "workers = 2\nworker = 3\n",
            "taskward.toml:2: unknown key `worker` (did you mean `workers`?)",
        ),
        (
            "\n\ngraceful-timeout = 3\n",
            "taskward.toml:3: unknown key `graceful-timeout` (did you mean `graceful_timeout`?)",
        ),
        (
            "workers = 2\n\n[server]\nworkers = 3\n",
            "taskward.toml:3: unknown key `server`",
        ),
        // Sorted by position, not by name: `zzz` on line 1 is reported first.
        ("zzz = 1\naaa = 2\n", "taskward.toml:1: unknown key `zzz`"),
    ];
    for (text, message) in cases {
        let dir = with_file(DEFAULT_CONFIG_FILE, text);
        let error = ServeConfig::load(flags(), no_env(), dir.path()).expect_err("unknown key");
        assert_eq!(error.to_string(), message, "file: {text:?}");
        assert!(matches!(error, ConfigError::UnknownKey { .. }));
    }
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let dir = with_file("bad.toml", "workers = 2\ntimeout = \n");
    let flags = ServeFlags {
        config: Some("bad.toml".into()),
        ..flags()
    };
    let error = ServeConfig::load(flags, no_env(), dir.path()).expect_err("bad TOML");
    let ConfigError::Syntax { path, line, .. } = &error else {
        panic!("expected a syntax error, got {error:?}");
    };
    assert_eq!((path.as_path(), *line), (Path::new("bad.toml"), Some(2)));
    assert!(
        error.to_string().starts_with("bad.toml:2: invalid TOML: "),
        "{error}"
    );

    let dir = with_file(DEFAULT_CONFIG_FILE, "workers = 1\nworkers = 2\n");
    let message = error_of_dir(&dir);
    assert!(
        message.starts_with("taskward.toml:2: invalid TOML: "),
        "a duplicate key is a syntax error: {message}"
    );
}

fn error_of_dir(dir: &TempDir) -> String {
    error(flags(), no_env(), dir.path())
}

#[test]
fn a_missing_explicit_config_file_is_an_error() {
    let dir = TempDir::new("config");
    let flags = ServeFlags {
        config: Some("missing.toml".into()),
        ..flags()
    };
    let error = ServeConfig::load(flags, no_env(), dir.path()).expect_err("the file is missing");
    assert_eq!(error.to_string(), "cannot read config file missing.toml");
    let source = error.source().expect("the io error is kept");
    let io = source.downcast_ref::<io::Error>().expect("an io::Error");
    assert_eq!(io.kind(), io::ErrorKind::NotFound);
}

#[test]
fn a_missing_default_config_file_is_fine_but_an_unreadable_one_is_not() {
    let dir = TempDir::new("config");
    assert!(ServeConfig::load(flags(), no_env(), dir.path()).is_ok());

    std::fs::create_dir(dir.path().join(DEFAULT_CONFIG_FILE)).expect("the temp dir is writable");
    assert_eq!(error_of_dir(&dir), "cannot read config file taskward.toml");
}

#[test]
fn an_explicit_relative_config_file_is_read_from_cwd() {
    let dir = with_file("other.toml", "workers = 5\n");
    std::fs::write(dir.path().join(DEFAULT_CONFIG_FILE), "workers = 6\n").expect("writable");
    let flags = ServeFlags {
        config: Some("other.toml".into()),
        ..flags()
    };
    let config = ServeConfig::load(flags, no_env(), dir.path()).expect("valid");
    assert_eq!(config.workers.get(), 5, "-c replaces the default file");
}

#[test]
fn a_program_is_required() {
    let dir = TempDir::new("config");
    for program in [vec![], vec![OsString::new()]] {
        let flags = ServeFlags {
            program,
            ..ServeFlags::default()
        };
        let error = ServeConfig::load(flags, no_env(), dir.path()).expect_err("no program");
        assert!(matches!(error, ConfigError::MissingProgram), "{error:?}");
    }
}

#[test]
fn max_requests_threshold() {
    let recycling = |limit, jitter| MaxRequests {
        limit: NonZeroU64::new(limit).expect("not zero"),
        jitter,
    };
    assert_eq!(recycling(100, 0).threshold(12345), 100);
    assert_eq!(recycling(100, 9).threshold(9), 109);
    assert_eq!(recycling(100, 9).threshold(10), 100);
    assert_eq!(recycling(u64::MAX, 9).threshold(5), u64::MAX);
    assert_eq!(recycling(1, u64::MAX).threshold(u64::MAX), u64::MAX);
    assert_eq!(recycling(1, u64::MAX).threshold(7), 8);
}

// Asserts: the values of #11 item 3 that used to start a master (and then panic in
// every worker, or fork without end) are refused at load, naming the setting and
// where it came from.
#[test]
fn out_of_range_values_are_refused() {
    let dir = TempDir::new("config");
    let flag_cases = [
        (
            ServeFlags {
                workers: Some("100000".into()),
                ..flags()
            },
            r#"flag --workers: workers: expected an integer from 1 to 512, found "100000""#,
        ),
        (
            ServeFlags {
                timeout: Some("0.0000001".into()),
                ..flags()
            },
            r#"flag --timeout: timeout: expected 0 (off) or a number of seconds from 0.001 to 31536000, found "0.0000001""#,
        ),
        (
            ServeFlags {
                graceful_timeout: Some("1e300".into()),
                ..flags()
            },
            r#"flag --graceful-timeout: graceful_timeout: expected a number of seconds from 0 to 31536000, found "1e300""#,
        ),
        (
            ServeFlags {
                reload_timeout: Some("31536001".into()),
                ..flags()
            },
            r#"flag --reload-timeout: reload_timeout: expected a number of seconds above 0, at most 31536000, found "31536001""#,
        ),
    ];
    for (flags, message) in flag_cases {
        assert_eq!(error(flags, no_env(), dir.path()), message);
    }
    let file = with_file(
        DEFAULT_CONFIG_FILE,
        "workers = 9223372036854775807
",
    );
    assert_eq!(
        error_of_dir(&file),
        "taskward.toml:1: workers: expected an integer from 1 to 512, found 9223372036854775807"
    );
    let at_bounds = ServeFlags {
        workers: Some(MAX_WORKERS.to_string().into()),
        timeout: Some("0.001".into()),
        graceful_timeout: Some(MAX_SECONDS.to_string().into()),
        ..flags()
    };
    let config = ServeConfig::load(at_bounds, no_env(), dir.path()).expect("the bounds are in");
    assert_eq!(config.workers.get(), MAX_WORKERS);
    assert_eq!(config.timeout, Some(MIN_TIMEOUT));
}

// Asserts: TASKWARD_DRAIN_DELAY, which the master does not use but every worker
// inherits, is checked with the workers' parser (before: every worker panicked on
// 1e300, and 5s made them exit while the master respawned them forever).
#[test]
fn a_bad_drain_delay_for_the_workers_stops_the_master() {
    let dir = TempDir::new("config");
    for value in ["1e300", "5s", "-1", ""] {
        assert_eq!(
            error(flags(), env(&[("TASKWARD_DRAIN_DELAY", value)]), dir.path()),
            format!(
                "environment variable TASKWARD_DRAIN_DELAY, inherited by every worker: \
                 expected a number of seconds from 0 to 31536000, found {value:?}"
            )
        );
    }
    assert!(
        ServeConfig::load(flags(), env(&[("TASKWARD_DRAIN_DELAY", "2.5")]), dir.path()).is_ok()
    );
}

// Asserts: only a regular file of at most 1 MiB is read as the config file: a device
// (`-c /dev/zero` read 3.6 GB in 3 s before) and a larger file are refused, named.
#[test]
fn the_config_file_is_a_bounded_regular_file() {
    let dir = TempDir::new("config");
    let load = |path: &str| {
        let flags = ServeFlags {
            config: Some(path.into()),
            ..flags()
        };
        ServeConfig::load(flags, no_env(), dir.path()).map(|_| ())
    };
    let message = |path: &str| {
        let error = load(path).expect_err("refused");
        crate::error_line::error_line(&error)
    };
    assert_eq!(
        message("/dev/zero"),
        "cannot read config file /dev/zero: not a regular file"
    );
    let big = dir.path().join("big.toml");
    let mut text = "# padding\n".repeat(usize::try_from(MAX_CONFIG_FILE).expect("fits") / 10 + 1);
    std::fs::write(&big, &text).expect("writable");
    assert_eq!(
        message("big.toml"),
        "cannot read config file big.toml: larger than 1048576 bytes"
    );
    text.truncate(usize::try_from(MAX_CONFIG_FILE).expect("fits"));
    text.truncate(text.rfind('\n').expect("lines") + 1);
    std::fs::write(&big, &text).expect("writable");
    assert!(load("big.toml").is_ok(), "a file within the limit is read");
}

// Asserts: the settings the workers also read are named as the protocol names them
// (config derives its variables from the keys; the protocol writes them once).
#[test]
fn shared_variables_are_the_protocols() {
    assert_eq!(
        Key::GracefulTimeout.env_var(),
        protocol::env::GRACEFUL_TIMEOUT
    );
    assert_eq!(Key::MaxRequests.env_var(), protocol::env::MAX_REQUESTS);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// The single-valued settings (`bind` has its own line in the file's strategy).
    fn scalars() -> Vec<Key> {
        Key::ALL
            .iter()
            .copied()
            .filter(|key| !key.is_list())
            .collect()
    }

    /// Text a value may be: numbers of every shape, words, anything.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            "[0-9.eE+-]{0,12}",
            any::<String>().prop_map(|s| s.replace(['\0', ':'], "")),
        ]
    }

    /// A TOML value as it would be written in the file.
    fn toml_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| format!("{n:?}")),
            Just("nan".to_owned()),
            Just("-inf".to_owned()),
            Just("true".to_owned()),
            Just("[1, 2]".to_owned()),
            Just("{ a = 1 }".to_owned()),
            text().prop_map(|s| format!("{s:?}")),
            "[ -~]{0,10}",
        ]
    }

    fn file_line() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            4 => proptest::sample::select(scalars()).prop_map(|k| k.name().to_owned()),
            1 => "[a-z_-]{1,12}",
        ];
        prop_oneof![
            8 => (key, toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
            1 => Just("bind = [\"127.0.0.1:0\", \"unix:/x.sock\"]".to_owned()),
            1 => "[ -~]{0,20}",
        ]
    }

    fn check(
        result: Result<ServeConfig, ConfigError>,
        sources: &[&str],
    ) -> Result<(), TestCaseError> {
        match result {
            Ok(config) => {
                prop_assert!(config.workers.get() <= MAX_WORKERS);
                prop_assert!(config.timeout.is_none_or(|t| t >= MIN_TIMEOUT));
                for duration in [config.graceful_timeout, config.reload_timeout]
                    .into_iter()
                    .chain(config.timeout)
                {
                    prop_assert!(duration <= Duration::from_secs(MAX_SECONDS));
                }
            }
            Err(error) => {
                let message = error.to_string();
                prop_assert!(
                    sources.iter().any(|source| message.starts_with(source)),
                    "{message} names none of {sources:?}"
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // Asserts: any file text loads, or is refused naming the file (and its line
        // for a bad value); a loaded configuration is within the documented ranges.
        #[test]
        fn any_file_loads_or_names_the_file(lines in proptest::collection::vec(file_line(), 0..6)) {
            let dir = with_file(DEFAULT_CONFIG_FILE, &lines.join("\n"));
            check(ServeConfig::load(flags(), no_env(), dir.path()), &["taskward.toml"])?;
        }

        // Asserts: any flag values (bind included) load, or are refused naming the flag.
        #[test]
        fn any_flags_load_or_name_the_flag(
            values in proptest::collection::vec((proptest::sample::select(Key::ALL.to_vec()), text()), 0..4),
        ) {
            let dir = TempDir::new("config");
            let mut given = flags();
            for (key, value) in &values {
                match given.value_mut(*key) {
                    Some(slot) => *slot = Some(value.into()),
                    // bind: loading does no DNS, so any text may be tried.
                    None => given.bind.push(value.into()),
                }
            }
            let sources: Vec<String> = values.iter().map(|(key, _)| format!("flag {}: {}", key.flag(), key.name())).collect();
            let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
            check(ServeConfig::load(given, no_env(), dir.path()), &sources)?;
        }

        // Asserts: any environment loads, or is refused naming the variable
        // (TASKWARD_DRAIN_DELAY, the workers' setting, included).
        #[test]
        fn any_environment_loads_or_names_the_variable(
            values in proptest::collection::vec((proptest::sample::select(Key::ALL.to_vec()), text()), 0..4),
            drain_delay in proptest::option::of(text()),
        ) {
            let dir = TempDir::new("config");
            let mut vars: Vec<(String, String)> =
                values.iter().map(|(key, value)| (key.env_var(), value.clone())).collect();
            vars.extend(drain_delay.map(|value| (protocol::env::DRAIN_DELAY.to_owned(), value)));
            let pairs: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let sources: Vec<String> = vars.iter().map(|(name, _)| format!("environment variable {name}")).collect();
            let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
            check(ServeConfig::load(flags(), env(&pairs), dir.path()), &sources)?;
        }
    }
}

#[test]
fn env_var_names() {
    let names: Vec<String> = Key::ALL.iter().copied().map(Key::env_var).collect();
    assert_eq!(
        names,
        [
            "TASKWARD_BIND",
            "TASKWARD_WORKERS",
            "TASKWARD_TIMEOUT",
            "TASKWARD_GRACEFUL_TIMEOUT",
            "TASKWARD_MAX_REQUESTS",
            "TASKWARD_MAX_REQUESTS_JITTER",
            "TASKWARD_BACKLOG",
            "TASKWARD_ADMIN_SOCKET",
            "TASKWARD_RELOAD_TIMEOUT",
        ]
    );
}

// Asserts: a host name in `bind` is not resolved while loading, from any source (before:
// load asked DNS, and `no-such-host.invalid` was a load error); listen::bind_all
// resolves it.
#[test]
fn a_host_name_is_not_resolved_while_loading() {
    let host = BindAddr::Host {
        host: "no-such-host.invalid".into(),
        port: 80,
    };
    let dir = with_file(DEFAULT_CONFIG_FILE, "bind = \"no-such-host.invalid:80\"\n");
    let from_file = ServeConfig::load(flags(), no_env(), dir.path()).expect("not resolved");
    assert_eq!(from_file.bind, std::slice::from_ref(&host));
    let empty = TempDir::new("config");
    let from_flag = ServeFlags {
        bind: vec!["no-such-host.invalid:80".into()],
        ..flags()
    };
    let from_flag = ServeConfig::load(from_flag, no_env(), empty.path()).expect("not resolved");
    assert_eq!(from_flag.bind, std::slice::from_ref(&host));
    let env = env(&[("TASKWARD_BIND", "no-such-host.invalid:80")]);
    let from_env = ServeConfig::load(flags(), env, empty.path()).expect("not resolved");
    assert_eq!(from_env.bind, [host]);
}

// Asserts: the flag of each setting is its file key with dashes, as the docs promise
// (the table names both; this keeps them one name).
#[test]
fn flags_are_the_keys_with_dashes() {
    for &key in Key::ALL {
        assert_eq!(key.flag(), format!("--{}", key.name().replace('_', "-")));
    }
}

// Asserts: every default in the table is a valid value of its setting, and the default
// bind is ServeConfig::DEFAULT_BIND.
#[test]
fn every_default_is_a_valid_value() {
    let dir = TempDir::new("config");
    for &key in Key::ALL {
        let Some(text) = key.default_text() else {
            continue;
        };
        let mut given = flags();
        match given.value_mut(key) {
            Some(value) => *value = Some(text.into()),
            None => given.bind = vec![text.into()],
        }
        ServeConfig::load(given, no_env(), dir.path())
            .unwrap_or_else(|error| panic!("the default of {}: {error}", key.name()));
    }
    let defaults = ServeConfig::load(flags(), no_env(), dir.path()).expect("defaults");
    assert_eq!(defaults.bind, [BindAddr::Tcp(ServeConfig::DEFAULT_BIND)]);
}

// Asserts: README.md's table of `taskward serve` options has a row for every setting,
// with its flag, file key, range and default as in the table (a setting added to the
// table and not to the README is red here).
#[test]
fn the_readme_lists_every_setting() {
    let readme = include_str!("../../../../README.md");
    for &key in Key::ALL {
        let key_cell = format!("| `{}` |", key.name());
        let row = readme
            .lines()
            .find(|line| line.contains(&key_cell) && line.contains(key.flag()))
            .unwrap_or_else(|| panic!("README.md has no row for {} ({})", key.name(), key.flag()));
        assert!(
            row.contains(key.range()),
            "README.md: {} accepts {}: {row}",
            key.name(),
            key.range()
        );
        if let Some(default) = key.default_text() {
            assert!(
                row.contains(default),
                "README.md: {} defaults to {default}: {row}",
                key.name()
            );
        }
    }
}

// Asserts: clap accepts the flag of every setting of the table (and its short form, as
// the help shows it), and hands the value over as given.
#[test]
fn every_flag_parses_with_clap() {
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeFlags,
    }

    for &key in Key::ALL {
        let cli = Cli::try_parse_from(["taskward", key.flag(), "7", "--", "prog"])
            .unwrap_or_else(|error| panic!("{}: {error}", key.flag()));
        assert_eq!(cli.serve.given(key), [OsStr::new("7")], "{}", key.flag());
    }
}
