//! The text form of a filter: what `Display` prints parses back to the same filter (positions
//! aside). Saved segments store their filter this way, whichever spelling created them.

use std::fmt::{self, Display, Formatter, Write};

use super::ast::{DateValue, FieldPath, Filter, Op, Predicate, Value};

impl Display for Filter {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_filter(f, self, false)
    }
}

/// `in_org`: inside `org[...]`, where paths are written relative to the membership.
fn write_filter(f: &mut Formatter<'_>, filter: &Filter, in_org: bool) -> fmt::Result {
    match filter {
        Filter::And(items) => join(f, items, " AND ", in_org),
        Filter::Or(items) => join(f, items, " OR ", in_org),
        Filter::Not(inner) => {
            f.write_str("NOT ")?;
            grouped(f, inner, in_org)
        }
        Filter::Predicate(predicate) => write_predicate(f, predicate, in_org),
        Filter::Org(inner) => {
            f.write_str("org[")?;
            write_filter(f, inner, true)?;
            f.write_str("]")
        }
        Filter::Segment { name, .. } => {
            f.write_str("IN SEGMENT ")?;
            Quoted(name).fmt(f)
        }
    }
}

fn join(f: &mut Formatter<'_>, items: &[Filter], separator: &str, in_org: bool) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        grouped(f, item, in_org)?;
    }
    Ok(())
}

/// Predicates, negations and `org[...]` stand alone (NOT binds tightest); lists are
/// parenthesized.
fn grouped(f: &mut Formatter<'_>, filter: &Filter, in_org: bool) -> fmt::Result {
    match filter {
        Filter::Predicate(_) | Filter::Not(_) | Filter::Org(_) | Filter::Segment { .. } => {
            write_filter(f, filter, in_org)
        }
        other => {
            f.write_str("(")?;
            write_filter(f, other, in_org)?;
            f.write_str(")")
        }
    }
}

impl Display for Predicate {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_predicate(f, self, false)
    }
}

fn write_predicate(f: &mut Formatter<'_>, predicate: &Predicate, in_org: bool) -> fmt::Result {
    let text = predicate.path.to_string();
    match text.strip_prefix("org.") {
        Some(relative) if in_org => f.write_str(relative)?,
        _ => f.write_str(&text)?,
    }
    predicate.write_op(f)
}

impl Predicate {
    fn write_op(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.op {
            Op::Compare(cmp, value) => write!(f, " {} {}", cmp.symbol(), Literal(value)),
            Op::In(values) => {
                f.write_str(" IN [")?;
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", Literal(value))?;
                }
                f.write_str("]")
            }
            Op::Exists => f.write_str(" EXISTS"),
            Op::StartsWith(prefix) => write!(f, " STARTS WITH {}", Quoted(prefix)),
            Op::Matches(text) => write!(f, " MATCHES {}", Quoted(text)),
            Op::Between(low, high) => write!(f, " BETWEEN {} AND {}", Literal(low), Literal(high)),
            Op::Sealed(tokens) => write!(f, " = <{} sealed values>", tokens.len()),
        }
    }
}

/// The text form of a path: `public.plan`, ``public.`a.b` ``.
impl Display for FieldPath {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Core(field) => f.write_str(field.name()),
            FieldPath::Metadata { namespace, keys } => {
                f.write_str(namespace.short_name())?;
                for key in keys {
                    if is_bare_key(key) {
                        write!(f, ".{key}")?;
                    } else {
                        write!(f, ".`{key}`")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Whether a key can be written without backticks.
fn is_bare_key(key: &str) -> bool {
    let mut chars = key.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$');
    let all_digits = !key.is_empty() && key.chars().all(|c| c.is_ascii_digit()) && key.len() < 19;
    (starts_well
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && !key.eq_ignore_ascii_case("now"))
        || all_digits
}

struct Literal<'a>(&'a Value);

/// A value as the text form writes it (`"gold"`, `2024-05-01T00:00:00Z`, `now-30d`).
pub fn value_text(value: &Value) -> String {
    Literal(value).to_string()
}

impl Display for Literal<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::String(s) => Quoted(s).fmt(f),
            Value::Integer(i) => write!(f, "{i}"),
            // Debug keeps a decimal point or exponent, so it lexes back as a float.
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Null => f.write_str("null"),
            Value::Date(DateValue::Absolute(ms)) => {
                let at =
                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*ms) * 1_000_000)
                        .map_err(|_| fmt::Error)?;
                let text = at
                    .format(&time::format_description::well_known::Rfc3339)
                    .map_err(|_| fmt::Error)?;
                f.write_str(&text)
            }
            Value::Date(DateValue::Relative(0)) => f.write_str("now"),
            Value::Date(DateValue::Relative(offset)) => {
                let sign = if *offset < 0 { '-' } else { '+' };
                let magnitude = offset.unsigned_abs();
                let (amount, unit) = [
                    (604_800_000, 'w'),
                    (86_400_000, 'd'),
                    (3_600_000, 'h'),
                    (60_000, 'm'),
                ]
                .into_iter()
                .find(|(unit_ms, _)| magnitude % unit_ms == 0)
                .map_or((magnitude / 1_000, 's'), |(unit_ms, unit)| {
                    (magnitude / unit_ms, unit)
                });
                write!(f, "now{sign}{amount}{unit}")
            }
        }
    }
}

struct Quoted<'a>(&'a str);

impl Display for Quoted<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                '\r' => f.write_str("\\r")?,
                c if c.is_control() && (c as u32) <= 0xFFFF => write!(f, "\\u{:04x}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// The filter as text, or why it has none (a key holding a backtick, a non-finite number, a
/// date outside years 0-9999, or a relative time finer than a second).
pub fn to_text(filter: &Filter) -> Result<String, NoTextForm> {
    let mut text = String::new();
    write!(text, "{filter}")
        .map_err(|_| NoTextForm("the filter has a date that cannot be written as text".into()))?;
    check_printable(filter)?;
    Ok(text)
}

/// Why a filter has no text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoTextForm(String);

fn check_printable(filter: &Filter) -> Result<(), NoTextForm> {
    match filter {
        Filter::And(items) | Filter::Or(items) => {
            if items.is_empty() {
                return Err(NoTextForm("an empty AND/OR list has no text form".into()));
            }
            items.iter().try_for_each(check_printable)
        }
        Filter::Not(inner) | Filter::Org(inner) => check_printable(inner),
        Filter::Segment { .. } => Ok(()),
        Filter::Predicate(predicate) => {
            if let Op::Sealed(_) = predicate.op {
                return Err(NoTextForm(
                    "a filter on sensitive paths has no text form".into(),
                ));
            }
            if let FieldPath::Metadata { keys, .. } = &predicate.path
                && let Some(key) = keys.iter().find(|k| k.contains('`'))
            {
                return Err(NoTextForm(format!(
                    "the key {key:?} holds a backtick, which the text form cannot quote"
                )));
            }
            let values: Vec<&Value> = match &predicate.op {
                Op::Compare(_, v) => vec![v],
                Op::In(vs) => vs.iter().collect(),
                Op::Between(a, b) => vec![a, b],
                _ => vec![],
            };
            for value in values {
                match value {
                    Value::Float(x) if !x.is_finite() => {
                        return Err(NoTextForm(format!("{x} is not a finite number")));
                    }
                    Value::Date(DateValue::Relative(ms)) if ms % 1_000 != 0 => {
                        return Err(NoTextForm(
                            "relative times are whole seconds in the text form".into(),
                        ));
                    }
                    _ => {}
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::query::{FilterLimits, parse_filter};

    fn unplaced(filter: &Filter) -> Filter {
        filter.unplaced()
    }

    fn round_trip(text: &str) -> String {
        let limits = FilterLimits::default();
        let filter = parse_filter(text, &limits).unwrap();
        let printed = to_text(&filter).unwrap();
        let again = parse_filter(&printed, &limits).unwrap_or_else(|e| panic!("{printed}: {e}"));
        assert_eq!(unplaced(&again), unplaced(&filter), "{text} -> {printed}");
        printed
    }

    #[test]
    fn prints_every_operator_and_value_back_to_the_same_filter() {
        assert_eq!(
            round_trip(
                "public.tier = 'gold' and (banned = true or NOT email_domain IN [\"a.com\", 'b.com'])"
            ),
            "public.tier = \"gold\" AND (banned = true OR NOT email_domain IN [\"a.com\", \"b.com\"])"
        );
        round_trip("created_at > now-30d AND updated_at < now+2h AND last_active_at >= now");
        round_trip("private.`a.b`.`3d`.`now`.x_1 BETWEEN -1.5 AND 2e300");
        round_trip("public.n = 1.0 AND public.m != -0.25 AND public.z = null");
        round_trip("created_at BETWEEN 2024-01-02 AND 2024-05-01T12:30:00.125Z");
        round_trip("name MATCHES \"ann \\\"the\\\" \\\\ best\\n\" AND username STARTS WITH 'a'");
        round_trip("public.tags.0 EXISTS AND NOT public.x EXISTS");
        // Found by fuzzing: digit keys are keys as written, so `0.5` never turns into a number
        // and `007` keeps its zeros.
        assert_eq!(
            round_trip("public.codes.007 .5.x = 1"),
            "public.codes.007.5.x = 1"
        );
        round_trip("NOT (public.a = 1 AND (public.b = 2 OR public.c = 3))");
    }

    #[test]
    fn filters_without_a_text_form_say_why() {
        let filter = Filter::Predicate(Predicate {
            path: FieldPath::Metadata {
                namespace: crate::user::MetadataNamespace::Public,
                keys: vec!["a`b".into()],
            },
            op: Op::Exists,
            position: 0,
        });
        assert!(
            to_text(&filter)
                .unwrap_err()
                .to_string()
                .contains("backtick")
        );
    }

    proptest! {
        #[test]
        fn random_filters_print_back_to_themselves(seed in any::<u64>()) {
            let fixture = crate::index::tests::fixture();
            let filter = crate::index::tests::valid_filter(seed, &fixture.users);
            let printed = to_text(&filter).unwrap();
            let again = parse_filter(&printed, &FilterLimits::default()).unwrap();
            prop_assert_eq!(unplaced(&again), unplaced(&filter), "{}", printed);
        }
    }
}
