//! The text form of the filter language (DESIGN.md "Query semantics"), parsed by recursive
//! descent into the AST. Keywords are case-insensitive; `AND` binds tighter than `OR`.

use super::ast::{CmpOp, CoreField, FieldPath, Filter, Op, Predicate, Value};
use super::error::{FilterError, FilterLimits};
use super::lexer::{Spanned, Token, tokenize};
use super::validate::validate;
use crate::user::MetadataNamespace;

/// Parses and validates a filter expression.
pub fn parse_filter(text: &str, limits: &FilterLimits) -> Result<Filter, FilterError> {
    let length = text.chars().count();
    if length > limits.max_length {
        return Err(FilterError::at(
            limits.max_length,
            format!(
                "the filter is {length} characters long; the limit is {}",
                limits.max_length
            ),
        ));
    }
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err(FilterError::at(0, "the filter is empty"));
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        end: length,
        limits: *limits,
        in_org: false,
    };
    let filter = parser.parse_or(0)?;
    if let Some(extra) = parser.peek() {
        return Err(FilterError::at(
            extra.position,
            format!(
                "expected AND, OR or the end of the filter, found {}",
                extra.token.describe()
            ),
        ));
    }
    validate(filter, limits)
}

struct Parser {
    tokens: Vec<Spanned>,
    next: usize,
    end: usize,
    limits: FilterLimits,
    /// Inside `org[...]`: paths are relative to one membership.
    in_org: bool,
}

impl Parser {
    fn peek(&self) -> Option<&Spanned> {
        self.tokens.get(self.next)
    }

    fn position(&self) -> usize {
        self.peek().map_or(self.end, |t| t.position)
    }

    fn found(&self) -> String {
        self.peek()
            .map_or("the end of the filter".to_string(), |t| t.token.describe())
    }

    fn advance(&mut self) -> Option<Spanned> {
        let token = self.tokens.get(self.next).cloned();
        self.next += 1;
        token
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Spanned { token: Token::Word(w), .. }) if w.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let matched = self.peek_keyword(keyword);
        if matched {
            self.next += 1;
        }
        matched
    }

    fn expect(&mut self, token: Token, what: &str) -> Result<(), FilterError> {
        if self.peek().map(|t| &t.token) == Some(&token) {
            self.next += 1;
            Ok(())
        } else {
            Err(FilterError::at(
                self.position(),
                format!("expected {what}, found {}", self.found()),
            ))
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), FilterError> {
        if depth > self.limits.max_depth {
            Err(FilterError::at(
                self.position(),
                format!(
                    "the filter nests deeper than {} levels",
                    self.limits.max_depth
                ),
            ))
        } else {
            Ok(())
        }
    }

    fn parse_or(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut parts = vec![self.parse_and(depth)?];
        while self.eat_keyword("OR") {
            parts.push(self.parse_and(depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Filter::Or(parts)
        })
    }

    fn parse_and(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut parts = vec![self.parse_unary(depth)?];
        while self.eat_keyword("AND") {
            parts.push(self.parse_unary(depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Filter::And(parts)
        })
    }

    fn parse_unary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        self.check_depth(depth)?;
        if self.eat_keyword("NOT") {
            return Ok(Filter::Not(Box::new(self.parse_unary(depth + 1)?)));
        }
        if self.peek().map(|t| &t.token) == Some(&Token::LParen) {
            self.next += 1;
            let inner = self.parse_or(depth + 1)?;
            self.expect(Token::RParen, "')' to close the parenthesis")?;
            return Ok(inner);
        }
        let bracket = self.tokens.get(self.next + 1).map(|t| &t.token);
        if self.peek_keyword("org") && bracket == Some(&Token::LBracket) {
            return self.parse_correlated(depth);
        }
        let segment = matches!(bracket, Some(Token::Word(w)) if w.eq_ignore_ascii_case("SEGMENT"));
        if self.peek_keyword("IN") && segment {
            return self.parse_segment_reference();
        }
        self.parse_predicate()
    }

    /// `IN SEGMENT "name"`.
    fn parse_segment_reference(&mut self) -> Result<Filter, FilterError> {
        let position = self.position();
        if self.in_org {
            return Err(FilterError::at(
                position,
                "IN SEGMENT cannot be inside org[...]: a segment holds users, not memberships",
            ));
        }
        self.next += 2;
        match self.advance() {
            Some(Spanned {
                token: Token::String(name),
                ..
            }) => Ok(Filter::Segment { name, position }),
            _ => Err(FilterError::at(
                self.tokens
                    .get(self.next - 1)
                    .map_or(self.end, |t| t.position),
                "IN SEGMENT needs the segment's name as a string: IN SEGMENT \"trial-users\"",
            )),
        }
    }

    /// `org[ filter ]`, its paths relative to one membership.
    fn parse_correlated(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if self.in_org {
            return Err(FilterError::at(
                self.position(),
                "org[...] cannot be nested: paths inside the brackets are already those of one membership",
            ));
        }
        self.next += 2;
        self.in_org = true;
        let inner = self.parse_or(depth + 1);
        self.in_org = false;
        let inner = inner?;
        self.expect(Token::RBracket, "']' to close org[")?;
        Ok(Filter::Org(Box::new(inner)))
    }

    fn parse_predicate(&mut self) -> Result<Filter, FilterError> {
        let position = self.position();
        let path = self.parse_path()?;
        let predicate = |op| {
            Filter::Predicate(Predicate {
                path: path.clone(),
                op,
                position,
            })
        };
        if let Some(Spanned {
            token: Token::Cmp(symbol),
            ..
        }) = self.peek()
        {
            let cmp = match *symbol {
                "=" => CmpOp::Eq,
                "!=" => CmpOp::Ne,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Lte,
                ">" => CmpOp::Gt,
                _ => CmpOp::Gte,
            };
            self.next += 1;
            let value = self.parse_value()?;
            return Ok(predicate(Op::Compare(cmp, value)));
        }
        let negated = self.eat_keyword("NOT");
        let filter = if self.eat_keyword("IN") {
            predicate(Op::In(self.parse_list()?))
        } else if self.eat_keyword("EXISTS") {
            predicate(Op::Exists)
        } else if self.eat_keyword("STARTS") {
            if !self.eat_keyword("WITH") {
                return Err(FilterError::at(
                    self.position(),
                    format!("expected WITH after STARTS, found {}", self.found()),
                ));
            }
            predicate(Op::StartsWith(self.parse_string("STARTS WITH")?))
        } else if self.eat_keyword("MATCHES") {
            predicate(Op::Matches(self.parse_string("MATCHES")?))
        } else if self.eat_keyword("BETWEEN") {
            let low = self.parse_value()?;
            if !self.eat_keyword("AND") {
                return Err(FilterError::at(
                    self.position(),
                    format!(
                        "expected AND between the two BETWEEN bounds, found {}",
                        self.found()
                    ),
                ));
            }
            let high = self.parse_value()?;
            predicate(Op::Between(low, high))
        } else {
            return Err(FilterError::at(
                self.position(),
                format!(
                    "expected an operator after {path} (=, !=, <, <=, >, >=, IN, EXISTS, STARTS WITH, MATCHES, BETWEEN), found {}",
                    self.found()
                ),
            ));
        };
        Ok(if negated {
            Filter::Not(Box::new(filter))
        } else {
            filter
        })
    }

    fn parse_path(&mut self) -> Result<FieldPath, FilterError> {
        let start = self.position();
        let mut segments = vec![self.parse_segment(true)?];
        while self.peek().map(|t| &t.token) == Some(&Token::Dot) {
            self.next += 1;
            segments.push(self.parse_segment(false)?);
        }
        if self.in_org {
            let keys: Vec<String> = segments.into_iter().map(|(k, _)| k).collect();
            if let Some(message) = crate::organization::org_path_error(&keys) {
                return Err(FilterError::at(
                    start,
                    format!(
                        "inside org[...] paths are those of one membership, without org. ({message})"
                    ),
                ));
            }
            return Ok(FieldPath::Metadata {
                namespace: MetadataNamespace::Org,
                keys,
            });
        }
        let (first, quoted) = &segments[0];
        if !quoted && let Some(namespace) = MetadataNamespace::parse(first) {
            if segments.len() == 1 {
                return Err(FilterError::at(
                    self.position(),
                    format!(
                        "expected '.' and a key after {first} (as in {}.plan)",
                        namespace.short_name()
                    ),
                ));
            }
            let keys: Vec<String> = segments.into_iter().skip(1).map(|(k, _)| k).collect();
            if namespace == MetadataNamespace::Org
                && let Some(message) = crate::organization::org_path_error(&keys)
            {
                return Err(FilterError::at(start, message));
            }
            return Ok(FieldPath::Metadata { namespace, keys });
        }
        match CoreField::parse(first) {
            Some(field) if segments.len() == 1 && !quoted => Ok(FieldPath::Core(field)),
            Some(field) => Err(FilterError::at(
                start,
                format!("{} has no sub-fields", field.name()),
            )),
            None => Err(FilterError::at(
                start,
                format!(
                    "unknown field '{first}': use a core field ({}) or a path starting with public., private., unsafe. or org.",
                    CoreField::ALL.map(CoreField::name).join(", ")
                ),
            )),
        }
    }

    fn parse_segment(&mut self, first: bool) -> Result<(String, bool), FilterError> {
        match self.peek().map(|t| t.token.clone()) {
            Some(Token::Word(word)) if !first || !is_reserved(&word) => {
                self.next += 1;
                Ok((word, false))
            }
            Some(Token::QuotedKey(key)) => {
                self.next += 1;
                Ok((key, true))
            }
            Some(Token::Integer(n)) if !first && n >= 0 => {
                self.next += 1;
                Ok((n.to_string(), false))
            }
            _ => Err(FilterError::at(
                self.position(),
                format!(
                    "expected {}, found {}",
                    if first {
                        "a field or metadata path"
                    } else {
                        "a key after '.'"
                    },
                    self.found()
                ),
            )),
        }
    }

    fn parse_value(&mut self) -> Result<Value, FilterError> {
        let position = self.position();
        let value = match self.advance().map(|t| t.token) {
            Some(Token::String(s)) => Value::String(s),
            Some(Token::Integer(n)) => Value::Integer(n),
            Some(Token::Float(f)) => Value::Float(f),
            Some(Token::Date(d)) => Value::Date(d),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
            other => {
                let found = other.map_or("the end of the filter".to_string(), |t| t.describe());
                let hint = if matches!(found.as_str(), s if s.starts_with('\'')) {
                    " (quote strings: \"gold\")"
                } else {
                    ""
                };
                return Err(FilterError::at(
                    position,
                    format!(
                        "expected a value (string, number, true, false, null, date or now-30d), found {found}{hint}"
                    ),
                ));
            }
        };
        Ok(value)
    }

    fn parse_string(&mut self, after: &str) -> Result<String, FilterError> {
        match self.peek().map(|t| t.token.clone()) {
            Some(Token::String(s)) => {
                self.next += 1;
                Ok(s)
            }
            _ => Err(FilterError::at(
                self.position(),
                format!(
                    "expected a quoted string after {after}, found {}",
                    self.found()
                ),
            )),
        }
    }

    fn parse_list(&mut self) -> Result<Vec<Value>, FilterError> {
        self.expect(Token::LBracket, "'[' to start the IN list")?;
        let mut values = Vec::new();
        if self.peek().map(|t| &t.token) == Some(&Token::RBracket) {
            return Err(FilterError::at(
                self.position(),
                "an IN list needs at least one value",
            ));
        }
        loop {
            values.push(self.parse_value()?);
            if values.len() > self.limits.max_in_values {
                return Err(FilterError::at(
                    self.position(),
                    format!(
                        "an IN list may hold at most {} values",
                        self.limits.max_in_values
                    ),
                ));
            }
            match self.advance().map(|t| t.token) {
                Some(Token::Comma) => continue,
                Some(Token::RBracket) => return Ok(values),
                _ => {
                    self.next -= 1;
                    return Err(FilterError::at(
                        self.position(),
                        format!("expected ',' or ']' in the IN list, found {}", self.found()),
                    ));
                }
            }
        }
    }
}

fn is_reserved(word: &str) -> bool {
    [
        "AND", "OR", "NOT", "IN", "EXISTS", "STARTS", "WITH", "MATCHES", "BETWEEN", "TRUE",
        "FALSE", "NULL",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::ast::DateValue;

    fn parse(text: &str) -> Filter {
        parse_filter(text, &FilterLimits::default()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn error(text: &str) -> FilterError {
        parse_filter(text, &FilterLimits::default()).unwrap_err()
    }

    fn meta(namespace: MetadataNamespace, keys: &[&str]) -> FieldPath {
        FieldPath::Metadata {
            namespace,
            keys: keys.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_applies_to_one_term() {
        let filter = parse("public.a = 1 OR NOT public.b EXISTS AND public.c = 'x'");
        let Filter::Or(parts) = filter else {
            panic!("expected OR at the top")
        };
        assert_eq!(parts.len(), 2);
        let Filter::And(and) = &parts[1] else {
            panic!("expected AND on the right")
        };
        assert!(matches!(and[0], Filter::Not(_)));
    }

    #[test]
    fn paths_accept_long_names_shorthands_and_backticks() {
        let Filter::Predicate(p) = parse("public_metadata.user_preferences.`utm-campaign` = \"x\"")
        else {
            panic!()
        };
        assert_eq!(
            p.path,
            meta(
                MetadataNamespace::Public,
                &["user_preferences", "utm-campaign"]
            )
        );
        let Filter::Predicate(p) = parse("private.`a.b`.c EXISTS") else {
            panic!()
        };
        assert_eq!(p.path, meta(MetadataNamespace::Private, &["a.b", "c"]));
        assert_eq!(p.op, Op::Exists);
        let Filter::Predicate(p) = parse("email_address = \"A@B.com\"") else {
            panic!()
        };
        assert_eq!(p.path, FieldPath::Core(CoreField::Email));
    }

    #[test]
    fn every_operator_parses() {
        for text in [
            "public.tier = \"gold\"",
            "public.tier != \"gold\"",
            "public.points < 5",
            "public.points <= 5.5",
            "public.points > -2",
            "public.points >= 1e3",
            "public.tier IN [\"gold\", \"platinum\"]",
            "public.tier EXISTS",
            "email STARTS WITH \"ann\"",
            "name MATCHES \"ann smith\"",
            "public.points BETWEEN 1 AND 10",
            "created_at > now-30d",
            "last_sign_in_at BETWEEN 2024-01-01 AND 2024-12-31T23:59:59Z",
            "public.beta = true",
            "public.referrer = null",
            "public.tier NOT IN [\"gold\"]",
            "public.tier NOT EXISTS",
            "banned = false",
        ] {
            parse(text);
        }
        let Filter::Predicate(p) = parse("created_at > now-1h") else {
            panic!()
        };
        assert_eq!(
            p.op,
            Op::Compare(CmpOp::Gt, Value::Date(DateValue::Relative(-3_600_000)))
        );
    }

    #[test]
    fn malformed_filters_report_position_and_expectation() {
        let e = error("public.tier = ");
        assert_eq!(e.position, Some(14));
        assert!(e.message.contains("expected a value"), "{e}");
        let e = error("public.tier \"gold\"");
        assert_eq!(e.position, Some(12));
        assert!(e.message.contains("expected an operator"), "{e}");
        let e = error("(public.a = 1");
        assert_eq!(e.position, Some(13));
        assert!(e.message.contains("')'"), "{e}");
        let e = error("plan = 1");
        assert_eq!(e.position, Some(0));
        assert!(e.message.contains("unknown field 'plan'"), "{e}");
        let e = error("public = 1");
        assert!(e.message.contains("expected '.'"), "{e}");
        let e = error("public.a = 1 public.b = 2");
        assert_eq!(e.position, Some(13));
        let e = error("public.a IN []");
        assert!(e.message.contains("at least one value"), "{e}");
        assert_eq!(error("").position, Some(0));
    }

    #[test]
    fn limits_protect_the_server() {
        let limits = FilterLimits {
            max_length: 100,
            max_depth: 3,
            max_predicates: 4,
            max_in_values: 2,
        };
        assert!(
            parse_filter(&"x".repeat(101), &limits)
                .unwrap_err()
                .message
                .contains("limit")
        );
        assert!(
            parse_filter("((((public.a = 1))))", &limits)
                .unwrap_err()
                .message
                .contains("deeper")
        );
        assert!(
            parse_filter("public.a IN [1,2,3]", &limits)
                .unwrap_err()
                .message
                .contains("at most 2")
        );
        let many = "public.a = 1 OR public.a = 2 OR public.a = 3 OR public.a = 4 OR public.a = 5";
        assert!(
            parse_filter(many, &limits)
                .unwrap_err()
                .message
                .contains("predicates")
        );
    }
}
