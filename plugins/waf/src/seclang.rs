//! SecLang text to directives: line continuations, comments, quoting as Apache/ModSecurity
//! config files use them, and the comma-separated action lists of rules.

/// One directive as written: `SecRule ARGS "@rx x" "id:1,deny"` gives name `SecRule` and the
/// three arguments without their quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The file it comes from (or `<inline>`), for messages.
    pub file: String,
    /// The line the directive starts on (1-based).
    pub line: usize,
    /// The directive's name as written, e.g. `SecRule`.
    pub name: String,
    /// Its arguments, unquoted.
    pub args: Vec<String>,
}

impl Directive {
    /// `file:line`, for messages.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// Splits a rule file into directives.
///
/// A line ending in `\` continues on the next line (the backslash and the line break are
/// removed); blank lines and lines starting with `#` are skipped. Arguments are separated by
/// whitespace and may be quoted with `"` or `'`; inside quotes, a backslash before the quote
/// character escapes it and every other backslash is kept (regexes keep their escapes).
/// Errors (an unterminated quote) name `file:line`.
pub fn parse(text: &str, file: &str) -> Result<Vec<Directive>, String> {
    let mut directives = Vec::new();
    let mut logical = String::new();
    let mut start = 0;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if logical.is_empty() {
            start = n + 1;
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
        }
        match line.strip_suffix('\\') {
            Some(head) => logical.push_str(head),
            None => {
                logical.push_str(line);
                directives.push(split_directive(&logical, file, start)?);
                logical.clear();
            }
        }
    }
    if !logical.trim().is_empty() {
        directives.push(split_directive(&logical, file, start)?);
    }
    Ok(directives)
}

fn split_directive(text: &str, file: &str, line: usize) -> Result<Directive, String> {
    let mut words = split_words(text).map_err(|e| format!("{file}:{line}: {e}"))?;
    let name = words.remove(0);
    Ok(Directive {
        file: file.to_string(),
        line,
        name,
        args: words,
    })
}

/// Whitespace-separated words with `"`/`'` quoting (never empty for a non-blank line).
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' || c == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(c2) = chars.next() {
                if c2 == '\\' && chars.peek() == Some(&c) {
                    word.push(c);
                    chars.next();
                } else if c2 == c {
                    closed = true;
                    break;
                } else {
                    word.push(c2);
                }
            }
            if !closed {
                return Err(format!("unterminated {c}quote{c}"));
            }
        } else {
            while let Some(&c2) = chars.peek() {
                if c2.is_whitespace() {
                    break;
                }
                word.push(c2);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

/// Splits a rule's action list (`id:1,phase:2,msg:'a, b',t:none`) into `(name, value)`
/// pairs: commas inside single quotes do not split, a value in single quotes loses them
/// (`\'` inside is a quote), names and values are trimmed.
pub fn split_actions(text: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut actions = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(actions);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == ':' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        let name = name.trim().to_string();
        if chars.peek() != Some(&':') {
            actions.push((name, None));
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&'\'') {
                    value.push('\'');
                    chars.next();
                } else if c == '\'' {
                    closed = true;
                    break;
                } else {
                    value.push(c);
                }
            }
            if !closed {
                return Err(format!("action {name}: unterminated quote"));
            }
            // Anything between the closing quote and the next comma is dropped.
            while chars.peek().is_some_and(|c| *c != ',') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        actions.push((name, Some(value)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crs_style_multi_line_rule() {
        let text = r#"
# a comment
SecRule REQUEST_HEADERS:Content-Length "!@rx ^\d+$" \
    "id:920160,\
    phase:1,\
    block,\
    t:none,\
    msg:'Content-Length HTTP header is not numeric',\
    setvar:'tx.anomaly_score_pl1=+%{tx.critical_anomaly_score}'"

SecMarker "END-REQUEST-920"
"#;
        let ds = parse(text, "x.conf").unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0].name, "SecRule");
        assert_eq!(ds[0].line, 3);
        assert_eq!(ds[0].args[0], "REQUEST_HEADERS:Content-Length");
        assert_eq!(ds[0].args[1], r"!@rx ^\d+$");
        assert!(ds[0].args[2].starts_with("id:920160,    phase:1,"));
        assert_eq!(ds[1].args, vec!["END-REQUEST-920"]);
        assert_eq!(ds[1].location(), "x.conf:11");
        let actions = split_actions(&ds[0].args[2]).unwrap();
        let names: Vec<&str> = actions.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["id", "phase", "block", "t", "msg", "setvar"]);
        assert_eq!(
            actions[4].1.as_deref(),
            Some("Content-Length HTTP header is not numeric")
        );
        assert_eq!(
            actions[5].1.as_deref(),
            Some("tx.anomaly_score_pl1=+%{tx.critical_anomaly_score}")
        );
    }

    #[test]
    fn quotes_and_escapes() {
        let ds = parse(r#"SecRule ARGS "@rx a\"b\\d\s" 'id:1,msg:\'x\''"#, "t").unwrap();
        assert_eq!(ds[0].args[1], r#"@rx a"b\\d\s"#);
        assert_eq!(ds[0].args[2], "id:1,msg:'x'");
        let err = parse("SecRule ARGS \"@rx x", "f.conf").unwrap_err();
        assert!(err.starts_with("f.conf:1:"), "{err}");
    }

    #[test]
    fn actions_with_commas_and_escaped_quotes_in_values() {
        let a = split_actions("id:1, msg:'a, b \\'c\\'' ,nolog,tag:x").unwrap();
        assert_eq!(
            a,
            vec![
                ("id".into(), Some("1".into())),
                ("msg".into(), Some("a, b 'c'".into())),
                ("nolog".into(), None),
                ("tag".into(), Some("x".into())),
            ]
        );
        assert!(split_actions("msg:'open").is_err());
    }

    #[test]
    fn unquoted_single_word_arguments_and_trailing_continuation() {
        let ds = parse("SecRuleEngine On\nSecAction \\\n  id:5,pass\\\n", "t").unwrap();
        assert_eq!(ds[0].args, vec!["On"]);
        assert_eq!(ds[1].args, vec!["id:5,pass"]);
    }
}
