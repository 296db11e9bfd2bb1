//! Unit tests of the configuration: flags, environment and file resolve in that order, and
//! every bad value is refused at start with a message naming the setting.

use super::*;

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
    move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
}

#[test]
fn flags_override_file_and_file_overrides_defaults() {
    let file: FileConfig = toml::from_str(
        "listen = \"127.0.0.1:9000\"\nmax_body_bytes = 4096\nidle_timeout_secs = 5\ndata_dir = \"/d\"\n\
         [[api_keys]]\nkey = \"k1\"\norg = \"acme\"\nproject = \"p\"\nread_only = true\n",
    )
    .unwrap();
    let args = ServeArgs { listen: Some("127.0.0.1:1".into()), ..ServeArgs::default() };
    let cfg = Config::from_parts(&args, file, &env_of(&[])).unwrap();
    assert_eq!(cfg.listen, "127.0.0.1:1");
    assert_eq!(cfg.max_body_bytes, 4096);
    assert_eq!(cfg.idle_timeout, Duration::from_secs(5));
    assert_eq!(cfg.header_read_timeout, Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT_SECS));
    assert_eq!(cfg.data_dir, PathBuf::from("/d"));
    assert!(cfg.api_keys[0].read_only);
    assert_eq!(cfg.body_timeout, Duration::from_secs(DEFAULT_BODY_TIMEOUT_SECS));
    assert_eq!(cfg.upload_timeout, Duration::from_secs(DEFAULT_UPLOAD_TIMEOUT_SECS));
    assert_eq!(cfg.max_connections, DEFAULT_MAX_CONNECTIONS);
}

#[test]
fn slow_client_settings_resolve_and_validate() {
    let file: FileConfig =
        toml::from_str("body_timeout_secs = 7\nupload_timeout_secs = 70\nmax_connections = 9\n").unwrap();
    let args = ServeArgs { data_dir: Some("/d".into()), max_connections: Some(5), ..ServeArgs::default() };
    let cfg = Config::from_parts(&args, file, &env_of(&[])).unwrap();
    assert_eq!(cfg.body_timeout, Duration::from_secs(7));
    assert_eq!(cfg.upload_timeout, Duration::from_secs(70));
    assert_eq!(cfg.max_connections, 5, "the flag beats the file");
    for bad in [
        ServeArgs { max_connections: Some(0), ..args.clone() },
        ServeArgs { body_timeout_secs: Some(0), ..args.clone() },
        ServeArgs { upload_timeout_secs: Some(0), ..args.clone() },
    ] {
        assert!(Config::from_parts(&bad, FileConfig::default(), &env_of(&[])).is_err());
    }
}

#[test]
fn the_retention_byte_budget_is_a_fraction_and_inf_turns_it_off() {
    let args = ServeArgs { data_dir: Some("/d".into()), ..ServeArgs::default() };
    let resolve = |file: &str, flag: Option<f64>| {
        let args = ServeArgs { retention_max_ratio: flag, ..args.clone() };
        Config::from_parts(&args, toml::from_str(file).unwrap(), &env_of(&[])).map(|c| c.retention_max_ratio)
    };
    assert_eq!(resolve("", None).unwrap(), Some(DEFAULT_RETENTION_MAX_RATIO));
    assert_eq!(resolve("retention_max_ratio = 0.5", None).unwrap(), Some(0.5));
    assert_eq!(resolve("retention_max_ratio = 0.5", Some(0.0)).unwrap(), Some(0.0), "the flag wins");
    assert_eq!(resolve("retention_max_ratio = inf", None).unwrap(), None);
    assert!(resolve("retention_max_ratio = -1.0", None).is_err());
    assert!(resolve("retention_max_ratio = nan", None).is_err());
}

#[test]
fn bad_files_and_keys_are_rejected() {
    assert!(toml::from_str::<FileConfig>("bogus = 1").is_err());
    let dup: FileConfig = toml::from_str(
        "[[api_keys]]\nkey = \"k\"\norg = \"a\"\nproject = \"p\"\n[[api_keys]]\nkey = \"k\"\norg = \"b\"\nproject = \"p\"\n",
    )
    .unwrap();
    let args = ServeArgs { data_dir: Some("/d".into()), ..ServeArgs::default() };
    assert!(Config::from_parts(&args, dup, &env_of(&[])).is_err());
    let bad_org: FileConfig =
        toml::from_str("[[api_keys]]\nkey = \"k\"\norg = \"a/b\"\nproject = \"p\"\n").unwrap();
    assert!(Config::from_parts(&args, bad_org, &env_of(&[])).is_err());
    let zero = ServeArgs { shutdown_timeout_secs: Some(0), ..args };
    assert!(Config::from_parts(&zero, FileConfig::default(), &env_of(&[])).is_err());
}

#[test]
fn default_data_dir_order() {
    let d = |sys, pairs| default_data_dir(sys, &env_of(pairs)).unwrap();
    assert_eq!(d(false, &[("HOME", "/h")]), PathBuf::from("/h/.local/share/tidepool"));
    assert_eq!(d(false, &[("HOME", "/h"), ("XDG_DATA_HOME", "/x")]), PathBuf::from("/x/tidepool"));
    assert_eq!(d(true, &[("HOME", "/h")]), PathBuf::from("/var/lib/tidepool"));
    assert_eq!(d(false, &[("HOME", "/h"), ("INVOCATION_ID", "abc")]), PathBuf::from("/var/lib/tidepool"));
    assert_eq!(d(false, &[("STATE_DIRECTORY", "/s:/t")]), PathBuf::from("/s"));
    assert!(default_data_dir(false, &env_of(&[])).is_err());
}
