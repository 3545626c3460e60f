//! `turnpike import-coturn`: turns a coturn `turnserver.conf` into the equivalent turnpike
//! configuration, with a comment for every option that has no equivalent or changes meaning.
//!
//! Pure: text in, text out (no file, no clock). The caller writes the result and checks it
//! with [`crate::config::Config::from_toml_str`]; the output is built so that this passes for
//! any input (options whose values turnpike would refuse are left out with a note).

mod cidr;
mod coturn;
#[cfg(test)]
mod tests;

pub use cidr::range_to_cidrs;

/// The outcome of an import.
#[derive(Clone, Debug)]
pub struct Import {
    /// The turnpike configuration (TOML), notes included as comments at the top.
    pub toml: String,
    /// What did not carry over, or carries over with another meaning.
    pub notes: Vec<Note>,
}

/// One remark about the input: an option turnpike has no equivalent for, one whose meaning
/// changes, or a default that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The line of turnserver.conf (1-based), or 0 for a remark about the whole file (a
    /// default that differs).
    pub line: usize,
    /// The coturn option, as written (`-` for a remark about the whole file).
    pub option: String,
    /// What happened to it, in words.
    pub message: String,
}

/// Converts the text of a coturn configuration file. Never fails: what cannot be converted
/// becomes a [`Note`]. `source` names the input in the output's header.
pub fn convert_coturn(text: &str, source: &str) -> Import {
    coturn::convert(text, source)
}

/// One option line of turnserver.conf: `name`, `name=value` or `name value` (the forms
/// coturn reads), leading dashes and surrounding quotes removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    pub number: usize,
    pub name: &'a str,
    pub value: Option<&'a str>,
}

/// The option lines of a coturn file, comments and blank lines skipped.
pub(crate) fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.trim_start_matches('-');
        let split = line.find(|c: char| c == '=' || c.is_whitespace());
        let (name, value) = match split {
            Some(at) => {
                let value = line[at + 1..].trim();
                (line[..at].trim(), Some(unquote(value)))
            }
            None => (line, None),
        };
        if name.is_empty() {
            continue;
        }
        out.push(Line {
            number: index + 1,
            name,
            value: value.filter(|v| !v.is_empty()),
        });
    }
    out
}

/// The value without one pair of surrounding double quotes.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// A TOML basic string holding `text`.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
