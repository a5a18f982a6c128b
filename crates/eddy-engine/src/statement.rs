//! Splitting a query string into statements.

/// Split `sql` at top-level semicolons, honouring quotes, dollar quotes and
/// comments. Empty statements are dropped; the pieces keep their text.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == quote {
                        if bytes.get(i + 1) == Some(&quote) {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                if let Some(len) = sql[i + 1..].find('$') {
                    let tag = &sql[i..i + len + 2];
                    if tag[1..tag.len() - 1]
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_')
                        && !tag[1..tag.len() - 1].starts_with(|c: char| c.is_ascii_digit())
                    {
                        if let Some(end) = sql[i + tag.len()..].find(tag) {
                            i += tag.len() + end + tag.len() - 1;
                        }
                    }
                }
            }
            b';' => {
                pieces.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    pieces.push(&sql[start.min(sql.len())..]);
    pieces
        .into_iter()
        .filter(|p| !is_blank(p))
        .map(str::trim)
        .collect()
}

/// True when `sql` holds only whitespace and comments.
fn is_blank(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    loop {
        if rest.is_empty() {
            return true;
        }
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(comment) = rest.strip_prefix("/*") {
            rest = comment.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let sql = "SELECT 'a;b'; -- c;d\nSELECT \"x;\" FROM t; /* ; */ ; SELECT $$;$$";
        assert_eq!(
            split_statements(sql),
            vec![
                "SELECT 'a;b'",
                "-- c;d\nSELECT \"x;\" FROM t",
                "SELECT $$;$$"
            ]
        );
    }

    #[test]
    fn blank_input_has_no_statements() {
        assert!(split_statements(" ; -- nothing\n ;").is_empty());
    }
}
