//! Secret redaction for everything a job store writes.

/// Replaces secrets in `text`: OpenAI-style keys (`sk-…`), `Bearer <token>` credentials and
/// `api_key=`/`token=` assignments become `[REDACTED]`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(skip) = secret_at(rest) {
            out.push_str(&rest[..skip.keep]);
            out.push_str("[REDACTED]");
            rest = &rest[skip.keep + skip.secret..];
            continue;
        }
        let ch = rest.chars().next().unwrap_or(' ');
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

struct Secret {
    keep: usize,
    secret: usize,
}

fn token_len(s: &str) -> usize {
    s.bytes()
        .take_while(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
        })
        .count()
}

fn secret_at(s: &str) -> Option<Secret> {
    let lower_prefix = |p: &str| {
        s.len() >= p.len() && s.is_char_boundary(p.len()) && s[..p.len()].eq_ignore_ascii_case(p)
    };
    if let Some(tail) = s.strip_prefix("sk-") {
        let n = token_len(tail);
        if n >= 8 {
            return Some(Secret {
                keep: 0,
                secret: 3 + n,
            });
        }
    }
    for prefix in [
        "bearer ",
        "api_key=",
        "apikey=",
        "api-key=",
        "token=",
        "\"apikey\":\"",
        "\"api_key\":\"",
    ] {
        if lower_prefix(prefix) {
            let n = token_len(&s[prefix.len()..]);
            if n >= 4 {
                return Some(Secret {
                    keep: prefix.len(),
                    secret: n,
                });
            }
        }
    }
    None
}
