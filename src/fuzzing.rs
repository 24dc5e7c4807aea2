//! Fuzz targets: the inputs a caller or Clerk controls, each fed to the code that parses it.
//! Every target must return, whatever the bytes: a panic or a hang is a bug. The committed
//! corpus under `fuzz/corpus/<target>/` is replayed by `tests/fuzz_corpus.rs` in the test
//! command; `fuzz/` holds the AFL++ harness that grows it (see `fuzz/README.md`).

use std::sync::LazyLock;

use crate::clerk::model::{parse_user_page, user_from_json};
use crate::clerk::webhook::{SvixHeaders, WebhookVerifier, parse_delivery};
use crate::query::sort::SortSpec;
use crate::query::{FilterLimits, parse_filter, to_text};
use crate::read::{ExportJob, Projection, decode_page_token};

/// A fuzz target: takes any bytes, returns without panicking.
pub type Target = fn(&[u8]);

/// The targets by name, as the corpus directories and the harness name them.
pub const TARGETS: [(&str, Target); 4] = [
    ("filter", filter),
    ("webhook", webhook),
    ("page_token", page_token),
    ("clerk_json", clerk_json),
];

/// A filter's text: parsed with the server's limits; what parses prints to text that parses
/// back to the same filter under the limits for stored text (printing may lengthen it).
pub fn filter(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let limits = FilterLimits::default();
    if let Ok(parsed) = parse_filter(&text, &limits)
        && let Ok(printed) = to_text(&parsed)
    {
        let again = parse_filter(&printed, &limits.stored()).unwrap_or_else(|e| {
            panic!("{printed:?} was printed from a filter but does not parse: {e}")
        });
        assert_eq!(
            again.unplaced(),
            parsed.unplaced(),
            "{printed:?} does not parse back to its filter"
        );
    }
}

static VERIFIER: LazyLock<WebhookVerifier> = LazyLock::new(|| {
    WebhookVerifier::new(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()])
        .expect("a valid secret")
});

/// A webhook delivery: three header lines (`svix-id`, `svix-timestamp`, `svix-signature`) then
/// the body. The signature check, then the body parser the delivery would reach once signed.
pub fn webhook(data: &[u8]) {
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let mut header = || parts.next().map(String::from_utf8_lossy);
    let (id, timestamp, signature) = (header(), header(), header());
    let body = parts.next().unwrap_or_default();
    let headers = SvixHeaders {
        id: id.as_deref(),
        timestamp: timestamp.as_deref(),
        signature: signature.as_deref(),
    };
    let now_secs = timestamp
        .as_deref()
        .and_then(|t| t.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let _ = VERIFIER.verify(headers, body, now_secs);
    let _ = parse_delivery(body, 1_800_000_000_000);
}

/// A page token or export cursor, against a search by id and an export without a filter.
pub fn page_token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = decode_page_token(&text, None, &SortSpec::by_id());
    let _ = ExportJob::new(None, Projection::default(), 10, &text);
}

/// A `GET /v1/users` page, and one user as a change log message carries it.
pub fn clerk_json(data: &[u8]) {
    let _ = parse_user_page(data);
    let _ = user_from_json(&String::from_utf8_lossy(data));
}
