//! Entry point for the `config` fuzz target in `fuzz/`: bytes as the text of a configuration
//! file, through the loader ([`Config::from_toml_str`]: TOML, the schema, validation) and, when
//! accepted, through what start-up derives from it. Besides "no panic": an error names a
//! position inside the text (or a key), an accepted configuration parses the same way twice.

use super::{Config, ConfigError, client_uris, redact_password};

/// Feeds `data` to the configuration loader; must never panic.
pub fn config(data: &[u8]) {
    // A file that is not UTF-8 is refused by `Config::load` before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text, "fuzz.toml") {
        Ok(config) => {
            let again = Config::from_toml_str(text, "fuzz.toml").ok();
            assert!(again.as_ref() == Some(&config), "parsed twice, differently");
            let _ = config.peer_policy();
            let _ = config.relay.external_mappings();
            let _ = client_uris(&config);
            if let Some(url) = &config.cluster.redis_url {
                let _ = redact_password(url);
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.starts_with("fuzz.toml"), "{message}");
            match error {
                ConfigError::Parse { line, column, .. } => {
                    let lines = text.split('\n').count();
                    assert!(line <= lines, "line {line} of {lines}");
                    assert!(column <= text.chars().count() + 1, "column {column}");
                }
                ConfigError::Invalid { key, message, .. } => {
                    assert!(!key.is_empty() && !message.is_empty(), "{key}: {message}");
                }
                ConfigError::Read { .. } => panic!("no file was read"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_log_filter_with_a_huge_regex_loads_quickly() {
        // Found by the fuzzer: a `log.level` whose field filter, compiled as a regex, took
        // minutes and over 2 GB; field values are now literal.
        let input = include_bytes!("../../fuzz/corpus/config/regression-log-level-regex");
        let started = std::time::Instant::now();
        super::config(input);
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn a_non_ascii_log_filter_is_refused() {
        // Found by the fuzzer: tracing-subscriber's parser panicked on it.
        let input = include_bytes!("../../fuzz/corpus/config/regression-log-level-non-ascii");
        super::config(input);
        let text = "[log]\nlevel = \"b[{a=\u{0411}}]=debug\"\n";
        let refused = crate::config::Config::from_toml_str(text, "t.toml").unwrap_err();
        assert!(refused.to_string().contains("log.level"), "{refused}");
    }

    #[test]
    fn a_log_filter_that_breaks_tracings_ordering_is_refused() {
        // Found by the fuzzer: span filters whose directives compare equal with different
        // fields tripped tracing-subscriber's ordering assertion (a panic in debug builds).
        let input = include_bytes!("../../fuzz/corpus/config/regression-log-level-ordering");
        super::config(input);
        let text = std::str::from_utf8(input).unwrap();
        let refused = crate::config::Config::from_toml_str(text, "t.toml").unwrap_err();
        assert!(
            refused.to_string().contains("span and field filters"),
            "{refused}"
        );
    }

    #[test]
    fn log_filters_are_levels_and_targets() {
        use crate::config::check_log_directives as check;
        for ok in [
            "info",
            "WARN",
            "info,turnpike=debug",
            " debug , turnpike::net=trace,",
            "turnpike",
            "hyper-util=off",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "b[{a=1}]=debug",
            "[span]",
            "turnpike=loud",
            "a=b=c",
            "tur npike=info",
            "=info",
            "\u{411}",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_entry_point_survives_samples() {
        for sample in [
            &b""[..],
            b"[",
            b"[relay]\nports = \"9-1\"\n",
            b"[auth]\nsecrets = [\"x\"]\nrealm = \"\xc3\xa9\"\n",
            include_bytes!("../../config/turnpike.toml"),
        ] {
            super::config(sample);
        }
    }
}
