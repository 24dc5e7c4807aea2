//! The read use cases on a caller's behalf: which snapshot answers (waiting, bounded, for a
//! requested generation or change-log sequence), what the caller may filter, sort and facet on,
//! paging with opaque tokens, projections, exports and the field catalog. Index work runs on a
//! blocking thread, or, for a count known to be short, on the async thread (`threads.rs`).

use std::sync::Arc;
use std::time::Duration;

use super::export::{ExportChunks, ExportJob, ReadUser, export};
use super::page_token;
use super::projection::{Projection, id_json};
use super::threads::{Costs, blocking};
use crate::auth::Caller;
use crate::clock::{SequenceClock, now_ms};
use crate::error::Error;
use crate::index::{FacetSpec, Facets, PathTypes, Snapshot, SortCursor, UserIndex, ValueColumns};
use crate::limits::{Budget, Budgets};
use crate::query::sort::SortSpec;
use crate::query::{CoreField, FieldPath, Filter};
use crate::sync::SyncState;

/// Page size of a search that asks for none.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// How new the snapshot answering a read must be: `generation` (this replica's commits) and
/// `log_sequence` (cluster mode's change log, the same on every replica); 0 for either means
/// any.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadAt {
    pub generation: u64,
    pub log_sequence: u64,
    /// Relative times (`now-30d`) mean the saved segments' clock at the snapshot, not the wall
    /// clock: what a saved segment's count, members and per-user answer are evaluated at, so
    /// they agree with its events.
    pub segment_clock: bool,
}

impl ReadAt {
    pub fn new(generation: u64, log_sequence: u64) -> ReadAt {
        ReadAt {
            generation,
            log_sequence,
            segment_clock: false,
        }
    }

    /// The same, at the saved segments' clock.
    pub fn at_segment_clock(self) -> ReadAt {
        ReadAt {
            segment_clock: true,
            ..self
        }
    }

    fn reached_by(self, snapshot: &Snapshot) -> bool {
        snapshot.freshness.generation >= self.generation
            && (self.log_sequence == 0
                || SyncState::log_sequence_of(&snapshot.sync_state) >= self.log_sequence)
    }
}

/// An answer and the snapshot that gave it (for its freshness stamp).
pub struct Answer<T> {
    pub value: T,
    pub snapshot: Arc<Snapshot>,
}

/// A search: filter, order, page and fields.
pub struct SearchQuery {
    pub filter: Option<Filter>,
    pub sort: SortSpec,
    /// 0 asks for [`DEFAULT_PAGE_SIZE`].
    pub page_size: u32,
    /// Empty for the first page.
    pub page_token: String,
    pub fields: Vec<String>,
    pub at: ReadAt,
}

/// One page of a search.
pub struct SearchPage {
    pub users: Vec<ReadUser>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// An export: filter, fields, chunking and where to resume.
pub struct ExportQuery {
    pub filter: Option<Filter>,
    pub fields: Vec<String>,
    pub chunk_size: u32,
    pub resume_cursor: String,
    pub ids_only: bool,
    pub at: ReadAt,
}

/// What the index holds, as far as the caller may see it.
pub struct FieldCatalog {
    pub metadata: Vec<PathTypes>,
    pub core: Vec<(CoreField, u64)>,
}

/// Reads users on behalf of callers. Cheap to clone.
#[derive(Clone)]
pub struct UserReader {
    index: UserIndex,
    max_page_size: u32,
    /// Longest a read waits for the snapshot it asks for.
    max_read_wait: Duration,
    /// Exports' buffers and threads are counted here.
    budgets: Arc<Budgets>,
    /// The saved segments' clock, for reads [`ReadAt::at_segment_clock`].
    segment_clock: Option<SequenceClock>,
    /// What each count's filter took last time: which thread runs it next.
    costs: Arc<Costs>,
}

impl UserReader {
    pub fn new(
        index: UserIndex,
        max_page_size: u32,
        max_read_wait: Duration,
        budgets: Arc<Budgets>,
    ) -> UserReader {
        UserReader {
            index,
            max_page_size,
            max_read_wait,
            budgets,
            segment_clock: None,
            costs: Arc::default(),
        }
    }

    /// The snapshot to answer from: the newest, once it has reached `at`.
    pub async fn snapshot(&self, at: ReadAt) -> Result<Arc<Snapshot>, Error> {
        self.index
            .snapshot_when(|snapshot| at.reached_by(snapshot), self.max_read_wait)
            .await
            .ok_or_else(|| {
                let now = self.index.snapshot();
                Error::DeadlineExceeded(format!(
                    "the index did not reach generation {} and change log sequence {} within {} ms \
                     (it is at generation {} and sequence {})",
                    at.generation,
                    at.log_sequence,
                    self.max_read_wait.as_millis(),
                    now.freshness.generation,
                    SyncState::log_sequence_of(&now.sync_state),
                ))
            })
    }

    /// One user by id, projected by `fields`.
    pub async fn get(
        &self,
        caller: &Caller,
        user_id: String,
        fields: Vec<String>,
        at: ReadAt,
    ) -> Result<Answer<ReadUser>, Error> {
        if user_id.is_empty() {
            return Err(Error::invalid("user_id", "user_id is required"));
        }
        let projection = Projection::new(fields, caller)?;
        let snapshot = self.snapshot(at).await?;
        let id = user_id.clone();
        let stored = blocking(snapshot.clone(), move |s| Ok(s.get_stored(&id)?)).await?;
        let stored = stored.ok_or_else(|| Error::NotFound {
            kind: "user",
            name: user_id.clone(),
        })?;
        let json = projection.apply_stored(
            &user_id,
            &stored.raw_json,
            stored.sealed.as_deref(),
            stored.organizations.as_deref(),
        )?;
        Ok(Answer {
            value: ReadUser { id: user_id, json },
            snapshot,
        })
    }

    /// The names of `segments` whose filter `user_id` matches now, in order (the caller has
    /// already left out what it may not read).
    pub async fn segments_of(
        &self,
        user_id: &str,
        segments: Vec<(String, Filter)>,
        at: ReadAt,
    ) -> Result<Answer<Vec<String>>, Error> {
        if user_id.is_empty() {
            return Err(Error::invalid("user_id", "user_id is required"));
        }
        let snapshot = self.snapshot(at).await?;
        let id = user_id.to_string();
        let user = blocking(snapshot.clone(), move |s| Ok(s.stored_user(&id)?)).await?;
        let user = user.ok_or_else(|| Error::NotFound {
            kind: "user",
            name: user_id.to_string(),
        })?;
        let now = self.now_for(at, &snapshot);
        let mut names: Vec<String> = (segments.into_iter())
            .filter(|(_, filter)| crate::query::eval::matches(filter, &user, now))
            .map(|(name, _)| name)
            .collect();
        names.sort();
        Ok(Answer {
            value: names,
            snapshot,
        })
    }

    /// One page of the users matching a filter, in `sort` order, ties broken by id.
    pub async fn search(
        &self,
        caller: &Caller,
        query: SearchQuery,
    ) -> Result<Answer<SearchPage>, Error> {
        let SearchQuery {
            filter,
            sort,
            page_size,
            page_token,
            fields,
            at,
        } = query;
        let filter = authorize_filter(caller, filter)?;
        caller.check_path(&sort.path, "sorting by")?;
        check_not_sensitive(caller, &sort.path, "sort.path", "sorting")?;
        let projection = Projection::new(fields, caller)?;
        let after = page_token::decode(&page_token, filter.as_ref(), &sort)?;
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > self.max_page_size => {
                return Err(Error::invalid(
                    "page_size",
                    format!("page_size {n} is above the limit of {}", self.max_page_size),
                ));
            }
            n => n,
        } as usize;
        let snapshot = self.snapshot(at).await?;
        let (query_filter, query_sort) = (filter.clone(), sort.clone());
        let plan = projection.columns().cloned();
        let with_json = !projection.ids_only() && plan.is_none();
        // Projection too runs off the async threads (a page of large users under a wide mask
        // is real work), unless pages of this filter, sort, size and mask were short: then on
        // this one (any page of a query costs about the same, so the cursor is not in the key).
        let shape = (&filter, &sort, limit, with_json, plan.is_some());
        let key = self.costs.key("search", &shape);
        let (users, last) = (self.costs)
            .run(key, snapshot.clone(), move |s| {
                // One more than asked tells whether another page exists.
                let mut hits = s.search(
                    query_filter.as_ref(),
                    &query_sort,
                    after,
                    limit + 1,
                    with_json,
                    now_ms(),
                )?;
                let more = hits.len() > limit;
                hits.truncate(limit);
                let last = hits.last().filter(|_| more).map(|last| SortCursor {
                    value: last.sort_value.clone(),
                    id: last.id.clone(),
                });
                let slots = match &plan {
                    Some(plan) => {
                        let addresses: Vec<_> = hits.iter().map(|hit| hit.address).collect();
                        let mut values = ValueColumns::new(plan.paths().to_vec());
                        s.slots_at(&mut values, &addresses)?
                    }
                    None => Vec::new(),
                };
                let mut slots = slots.into_iter();
                let users = hits
                    .into_iter()
                    .map(|hit| {
                        if let Some(plan) = &plan {
                            let slots = slots.next().unwrap_or_default();
                            let json = match plan.render(&hit.id, &mut &slots[..])? {
                                Some(json) => json,
                                None => projection.apply_at(s, &hit.id, hit.address)?,
                            };
                            return Ok(ReadUser { id: hit.id, json });
                        }
                        let json = match &hit.raw_json {
                            Some(raw) => {
                                let organizations = hit.organizations.as_deref();
                                projection.apply_stored(
                                    &hit.id,
                                    raw,
                                    hit.sealed.as_deref(),
                                    organizations,
                                )?
                            }
                            None => id_json(&hit.id),
                        };
                        Ok(ReadUser { id: hit.id, json })
                    })
                    .collect::<Result<Vec<_>, Error>>()?;
                Ok((users, last))
            })
            .await?;
        let next_page_token = last
            .map(|last| page_token::encode(last, filter.as_ref(), &sort))
            .unwrap_or_default();
        Ok(Answer {
            value: SearchPage {
                users,
                next_page_token,
            },
            snapshot,
        })
    }

    /// The number of users matching a filter (every user without one).
    pub async fn count(
        &self,
        caller: &Caller,
        filter: Option<Filter>,
        at: ReadAt,
    ) -> Result<Answer<u64>, Error> {
        let filter = authorize_filter(caller, filter)?;
        let snapshot = self.snapshot(at).await?;
        let now = self.now_for(at, &snapshot);
        let key = self.costs.key("count", &filter);
        let count = (self.costs)
            .run(key, snapshot.clone(), move |s| {
                Ok(s.count(filter.as_ref(), now)?)
            })
            .await?;
        Ok(Answer {
            value: count,
            snapshot,
        })
    }

    /// Facets over the users matching a filter.
    pub async fn facets(
        &self,
        caller: &Caller,
        filter: Option<Filter>,
        specs: Vec<FacetSpec>,
        at: ReadAt,
    ) -> Result<Answer<Facets>, Error> {
        let filter = authorize_filter(caller, filter)?;
        for (n, spec) in specs.iter().enumerate() {
            caller.check_path(&spec.path, "faceting on")?;
            check_not_sensitive(caller, &spec.path, &format!("facets[{n}].path"), "facets")?;
        }
        let snapshot = self.snapshot(at).await?;
        let facets = blocking(snapshot.clone(), move |s| {
            Ok(s.facets(filter.as_ref(), &specs, now_ms())?)
        })
        .await?;
        Ok(Answer {
            value: facets,
            snapshot,
        })
    }

    /// Starts an export of the users matching a filter, from one snapshot.
    pub async fn export(&self, caller: &Caller, query: ExportQuery) -> Result<ExportChunks, Error> {
        let ExportQuery {
            filter,
            fields,
            chunk_size,
            resume_cursor,
            ids_only,
            at,
        } = query;
        let filter = authorize_filter(caller, filter)?;
        let projection = Projection::new(fields, caller)?;
        let job = ExportJob::new(filter, projection, chunk_size, &resume_cursor)?
            .with_ids_only(ids_only)?;
        // Held by the export until it ends or its reader goes away.
        let slot = self.budgets.acquire(Budget::Exports, &caller.name)?;
        let snapshot = self.snapshot(at).await?;
        let now = self.now_for(at, &snapshot);
        Ok(export(snapshot, job, now, self.budgets.clone(), slot))
    }

    /// Reads [`ReadAt::at_segment_clock`] evaluate relative times at this clock.
    pub fn with_segment_clock(mut self, clock: SequenceClock) -> UserReader {
        self.segment_clock = Some(clock);
        self
    }

    /// The instant relative times mean for a read at `at` on `snapshot`.
    fn now_for(&self, at: ReadAt, snapshot: &Snapshot) -> i64 {
        match (&self.segment_clock, at.segment_clock) {
            (Some(clock), true) => clock(snapshot.event_sequence),
            _ => now_ms(),
        }
    }

    /// The budgets of every stream the service holds.
    pub fn budgets(&self) -> &Arc<Budgets> {
        &self.budgets
    }

    /// The metadata paths and core fields the index holds, whose names start with `prefix`,
    /// among what the caller may read (key names are data too).
    pub async fn describe(
        &self,
        caller: &Caller,
        prefix: &str,
        at: ReadAt,
    ) -> Result<Answer<FieldCatalog>, Error> {
        let snapshot = self.snapshot(at).await?;
        let (metadata, core) = blocking(snapshot.clone(), |s| {
            Ok((s.field_catalog()?, s.core_field_counts()?))
        })
        .await?;
        let prefix = prefix.trim();
        let metadata = metadata
            .into_iter()
            .filter(|entry| caller.check_path(&entry.path, "describing").is_ok())
            .filter(|entry| entry.path.to_string().starts_with(prefix))
            .collect();
        let core = core
            .into_iter()
            .filter(|(field, _)| field.name().starts_with(prefix))
            .collect();
        Ok(Answer {
            value: FieldCatalog { metadata, core },
            snapshot,
        })
    }
}

/// Checks that the caller may evaluate `filter`, and turns predicates on sensitive paths into
/// blind-index lookups (the only form in which they reach the index).
fn authorize_filter(caller: &Caller, filter: Option<Filter>) -> Result<Option<Filter>, Error> {
    caller.check_filter(filter.as_ref())?;
    match (filter, &caller.sensitive) {
        (Some(filter), Some(sensitive)) => Ok(Some(
            sensitive
                .seal_filter(filter)
                .map_err(|e| Error::invalid("filter", e.to_string()))?,
        )),
        (filter, _) => Ok(filter),
    }
}

/// Sorts and facets need values in the index, which sensitive paths do not have there.
fn check_not_sensitive(
    caller: &Caller,
    path: &FieldPath,
    field: &str,
    what: &str,
) -> Result<(), Error> {
    if caller.is_sensitive(path) {
        return Err(Error::invalid(
            field,
            format!(
                "{path} is a sensitive path: it can be filtered only with =, != or IN, not used for {what}"
            ),
        ));
    }
    Ok(())
}
