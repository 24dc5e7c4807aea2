//! Splits the text form of a filter into tokens, each with its character position.

use super::ast::DateValue;
use super::error::FilterError;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// A bare word: a keyword (`AND`, `true`, ...) or a path segment.
    Word(String),
    /// A backtick-quoted path segment.
    QuotedKey(String),
    Dot,
    String(String),
    Integer(i64),
    Float(f64),
    Date(DateValue),
    Cmp(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

impl Token {
    pub fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("'{w}'"),
            Token::QuotedKey(k) => format!("`{k}`"),
            Token::Dot => "'.'".into(),
            Token::String(s) => format!("string \"{s}\""),
            Token::Integer(i) => format!("number {i}"),
            Token::Float(f) => format!("number {f}"),
            Token::Date(_) => "a date".into(),
            Token::Cmp(op) => format!("'{op}'"),
            Token::LParen => "'('".into(),
            Token::RParen => "')'".into(),
            Token::LBracket => "'['".into(),
            Token::RBracket => "']'".into(),
            Token::Comma => "','".into(),
        }
    }
}

/// A token and the character offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    pub token: Token,
    pub position: usize,
}

pub fn tokenize(text: &str) -> Result<Vec<Spanned>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let token = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => {
                i += 1;
                Token::LParen
            }
            ')' => {
                i += 1;
                Token::RParen
            }
            '[' => {
                i += 1;
                Token::LBracket
            }
            ']' => {
                i += 1;
                Token::RBracket
            }
            ',' => {
                i += 1;
                Token::Comma
            }
            '.' => {
                i += 1;
                Token::Dot
            }
            '=' => {
                i += if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
                Token::Cmp("=")
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Token::Cmp("!=")
            }
            '<' if chars.get(i + 1) == Some(&'>') => {
                i += 2;
                Token::Cmp("!=")
            }
            '<' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Token::Cmp("<=")
            }
            '<' => {
                i += 1;
                Token::Cmp("<")
            }
            '>' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Token::Cmp(">=")
            }
            '>' => {
                i += 1;
                Token::Cmp(">")
            }
            '"' | '\'' => {
                let (s, next) = lex_string(&chars, i)?;
                i = next;
                Token::String(s)
            }
            '`' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or_else(|| {
                        FilterError::at(
                            start,
                            "unterminated `quoted key`: add the closing backtick",
                        )
                    })?;
                let key: String = chars[i + 1..i + 1 + end].iter().collect();
                i += end + 2;
                Token::QuotedKey(key)
            }
            // A key after '.' that starts with a digit (`tags.0`, `codes.007`) is a key as
            // written, never a number: `a.0.5` is the keys 0 and 5, not a key and 0.5.
            c if c.is_ascii_digit()
                && matches!(
                    tokens.last(),
                    Some(Spanned {
                        token: Token::Dot,
                        ..
                    })
                ) =>
            {
                let end = chars[i..]
                    .iter()
                    .position(|&c| !(c.is_alphanumeric() || c == '_' || c == '$'))
                    .map_or(chars.len(), |n| i + n);
                let key: String = chars[i..end].iter().collect();
                i = end;
                Token::Word(key)
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let (token, next) = lex_number_or_date(&chars, i)?;
                i = next;
                token
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| !(c.is_alphanumeric() || c == '_' || c == '$'))
                    .map_or(chars.len(), |n| i + n);
                let word: String = chars[i..end].iter().collect();
                i = end;
                if word.eq_ignore_ascii_case("now") {
                    let (offset, next) = lex_relative(&chars, i, start)?;
                    i = next;
                    Token::Date(DateValue::Relative(offset))
                } else {
                    Token::Word(word)
                }
            }
            other => {
                return Err(FilterError::at(
                    start,
                    format!("unexpected character '{other}'"),
                ));
            }
        };
        tokens.push(Spanned {
            token,
            position: start,
        });
    }
    Ok(tokens)
}

fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), FilterError> {
    let quote = chars[start];
    let mut out = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            c if c == quote => return Ok((out, i + 1)),
            '\\' => {
                let escaped = chars
                    .get(i + 1)
                    .ok_or_else(|| FilterError::at(i, "string ends in the middle of an escape"))?;
                match escaped {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'u' => {
                        let hex: String = chars
                            .get(i + 2..i + 6)
                            .map(|h| h.iter().collect())
                            .unwrap_or_default();
                        let code = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                FilterError::at(i, "\\u must be followed by four hex digits")
                            })?;
                        out.push(code);
                        i += 4;
                    }
                    other => out.push(*other),
                }
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(FilterError::at(
        start,
        format!("unterminated string: add the closing {quote}"),
    ))
}

fn lex_number_or_date(chars: &[char], start: usize) -> Result<(Token, usize), FilterError> {
    // A date literal: YYYY-MM-DD, optionally followed by THH:MM[:SS[.fff]] and Z or an offset.
    let is_digit = |k: usize| chars.get(k).is_some_and(char::is_ascii_digit);
    if (0..4).all(|k| is_digit(start + k))
        && chars.get(start + 4) == Some(&'-')
        && is_digit(start + 5)
    {
        let end = chars[start..]
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | '+')))
            .map_or(chars.len(), |n| start + n);
        let text: String = chars[start..end].iter().collect();
        let ms = parse_date_literal(&text).ok_or_else(|| {
            FilterError::at(
                start,
                format!(
                    "'{text}' is not a date: use YYYY-MM-DD or RFC 3339 (2024-05-01T12:00:00Z)"
                ),
            )
        })?;
        return Ok((Token::Date(DateValue::Absolute(ms)), end));
    }
    let mut end = start + 1;
    let mut is_float = false;
    while end < chars.len() {
        match chars[end] {
            c if c.is_ascii_digit() => {}
            '.' if chars.get(end + 1).is_some_and(char::is_ascii_digit) => is_float = true,
            'e' | 'E' => {
                is_float = true;
                if matches!(chars.get(end + 1), Some('+' | '-')) {
                    end += 1;
                }
            }
            _ => break,
        }
        end += 1;
    }
    let text: String = chars[start..end].iter().collect();
    let token = if is_float {
        Token::Float(
            text.parse()
                .map_err(|_| FilterError::at(start, format!("'{text}' is not a number")))?,
        )
    } else {
        match text.parse::<i64>() {
            Ok(n) => Token::Integer(n),
            Err(_) => Token::Float(
                text.parse()
                    .map_err(|_| FilterError::at(start, format!("'{text}' is not a number")))?,
            ),
        }
    };
    Ok((token, end))
}

/// After `now`: nothing, or `+N<unit>` / `-N<unit>` with unit s, m, h, d or w.
fn lex_relative(chars: &[char], i: usize, start: usize) -> Result<(i64, usize), FilterError> {
    let sign = match chars.get(i) {
        Some('-') => -1,
        Some('+') => 1,
        _ => return Ok((0, i)),
    };
    let digits_end = chars[i + 1..]
        .iter()
        .position(|c| !c.is_ascii_digit())
        .map_or(chars.len(), |n| i + 1 + n);
    let amount: i64 = chars[i + 1..digits_end]
        .iter()
        .collect::<String>()
        .parse()
        .map_err(|_| FilterError::at(start, "a relative time needs a number, as in now-30d"))?;
    let unit_ms = match chars.get(digits_end) {
        Some('s') => 1_000,
        Some('m') => 60_000,
        Some('h') => 3_600_000,
        Some('d') => 86_400_000,
        Some('w') => 604_800_000,
        _ => {
            return Err(FilterError::at(
                start,
                "a relative time needs a unit: s, m, h, d or w (as in now-30d)",
            ));
        }
    };
    Ok((sign * amount.saturating_mul(unit_ms), digits_end + 1))
}

/// A date on its own: RFC 3339, `YYYY-MM-DD`, or relative (`now`, `now-30d`).
pub fn parse_date_value(text: &str) -> Option<DateValue> {
    match tokenize(text.trim()).ok()?.as_slice() {
        [
            Spanned {
                token: Token::Date(date),
                ..
            },
        ] => Some(*date),
        _ => parse_date_literal(text.trim()).map(DateValue::Absolute),
    }
}

/// RFC 3339, or a bare `YYYY-MM-DD` (midnight UTC), to milliseconds since the epoch.
pub fn parse_date_literal(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(dt) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Some((dt.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &format).ok()?;
    Some((date.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Token> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|s| s.token)
            .collect()
    }

    #[test]
    fn lexes_operators_numbers_dates_and_relative_times() {
        assert_eq!(
            kinds("a.b >= -1.5 AND c != 2024-01-02 OR d < now-30d"),
            vec![
                Token::Word("a".into()),
                Token::Dot,
                Token::Word("b".into()),
                Token::Cmp(">="),
                Token::Float(-1.5),
                Token::Word("AND".into()),
                Token::Word("c".into()),
                Token::Cmp("!="),
                Token::Date(DateValue::Absolute(1_704_153_600_000)),
                Token::Word("OR".into()),
                Token::Word("d".into()),
                Token::Cmp("<"),
                Token::Date(DateValue::Relative(-30 * 86_400_000)),
            ]
        );
        assert_eq!(kinds("now"), vec![Token::Date(DateValue::Relative(0))]);
        assert_eq!(
            kinds("x = 2024-05-01T12:00:00.5Z")[2],
            Token::Date(DateValue::Absolute(1_714_564_800_500))
        );
    }

    #[test]
    fn strings_support_escapes_and_both_quotes() {
        assert_eq!(
            kinds(r#""a\"b" 'c' "\u00e9""#),
            vec![
                Token::String("a\"b".into()),
                Token::String("c".into()),
                Token::String("é".into())
            ]
        );
    }

    #[test]
    fn errors_carry_positions() {
        assert_eq!(tokenize("a = \"open").unwrap_err().position, Some(4));
        assert_eq!(tokenize("a = #").unwrap_err().position, Some(4));
        assert_eq!(tokenize("a < now-3").unwrap_err().position, Some(4));
        assert_eq!(tokenize("a < 2024-13-01").unwrap_err().position, Some(4));
    }
}
