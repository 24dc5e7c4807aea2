//! Opaque page tokens: where the previous page ended, and a fingerprint of the filter and sort it
//! belongs to, so a token is never silently applied to a different query.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::index::SortCursor;
use crate::query::Filter;
use crate::query::sort::SortSpec;

#[derive(Serialize, Deserialize)]
struct PageToken {
    after: SortCursor,
    query: u64,
}

/// FNV-1a over the debug form of the (validated) filter and the sort: stable for equal queries.
fn fingerprint(filter: Option<&Filter>, sort: &SortSpec) -> u64 {
    format!("{filter:?}|{sort:?}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

pub fn encode(after: SortCursor, filter: Option<&Filter>, sort: &SortSpec) -> String {
    let token = PageToken {
        after,
        query: fingerprint(filter, sort),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("page tokens serialize"))
}

pub fn decode(
    token: &str,
    filter: Option<&Filter>,
    sort: &SortSpec,
) -> Result<Option<SortCursor>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("page_token", "page_token is not a token this server issued");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let token: PageToken = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if token.query != fingerprint(filter, sort) {
        return Err(Error::invalid(
            "page_token",
            "page_token belongs to a different filter or sort: send the same filter and sort as for the first page",
        ));
    }
    Ok(Some(token.after))
}
