//! Redaction: how secrets and credentials appear in messages, logs and `clerk-index config`.
//! A leaf: anything may use it, it uses nothing of the crate.

/// A secret as configuration output shows it: its kind prefix (`sk_live_`, `whsec_`) and length,
/// never its value.
pub fn mask(secret: &str) -> String {
    let prefix: String = match secret.find('_') {
        Some(end) if end <= 8 => {
            let rest = &secret[end + 1..];
            let second = rest.find('_').filter(|i| *i <= 8).map_or(0, |i| i + 1);
            secret[..end + 1 + second].to_string()
        }
        _ => String::new(),
    };
    format!("{prefix}*** ({} characters)", secret.chars().count())
}

/// `text` cut to at most `max` bytes (on a character boundary) with what was cut said, for
/// messages that may carry a caller's input: a gRPC status (whose `grpc-message` header a
/// client may refuse past 8 KiB), a webhook answer, a log line.
pub fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}... ({} bytes, cut)", &text[..end], text.len()))
}

/// URLs with the password or token of their user info masked (`nats://app:***@host`), for
/// messages and `clerk-index config`. Several URLs may be comma-separated.
pub fn mask_url(urls: &str) -> String {
    urls.split(',')
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme + 3 => {
                let start = scheme + 3;
                let userinfo = &url[start..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => format!("{}{user}:***{}", &url[..start], &url[at..]),
                    None => format!("{}***{}", &url[..start], &url[at..]),
                }
            }
            _ => url.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod clip_tests {
    use super::*;

    #[test]
    fn clipping_keeps_short_text_and_cuts_long_text_on_a_character() {
        assert_eq!(clip("short", 10), "short");
        let long = "é".repeat(1000);
        let cut = clip(&long, 11);
        assert_eq!(cut, "ééééé... (2000 bytes, cut)");
    }
}
