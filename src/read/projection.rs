//! Field masks: reduce a user's Clerk JSON to the requested paths, and to what the caller may
//! read: metadata namespaces it lacks the scope for are left out, sensitive values are opened
//! for callers with the `sensitive` scope and never reach anyone else.

use std::sync::Arc;

use serde_json::{Map, Value};
use tantivy::DocAddress;

use super::columns::ColumnPlan;
use super::mask::Mask;
use crate::auth::{Caller, Scope, Sensitive};
use crate::error::Error;
use crate::index::{Snapshot, push_json_str};
use crate::user::MetadataNamespace;

/// Field-mask entries one request may name.
pub const MAX_FIELD_MASK_ENTRIES: usize = 256;
/// The longest field-mask entry, in bytes.
pub const MAX_FIELD_PATH_BYTES: usize = 512;

/// What a response holds of each user.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    fields: Vec<String>,
    /// `fields` as a tree, built once per request (not once per user).
    mask: Arc<Mask>,
    hidden: Vec<MetadataNamespace>,
    /// The server's sensitive paths, if any.
    sensitive: Option<Arc<Sensitive>>,
    /// The caller may read sensitive values.
    reveal: bool,
    /// How users are written from the index's columns, when every field has one.
    columns: Option<Arc<ColumnPlan>>,
}

impl Projection {
    /// A mask naming a namespace or sensitive path the caller cannot read is refused; an empty
    /// mask returns everything the caller can.
    pub fn new(fields: Vec<String>, caller: &Caller) -> Result<Projection, Error> {
        check_mask_size(&fields)?;
        caller.check_field_mask(&fields)?;
        let mask = Mask::of(&fields);
        let reveal = caller.scopes.contains(Scope::Sensitive);
        let revealed = caller.sensitive.as_ref().filter(|_| reveal);
        let columns = match ids_only(&fields) {
            true => None,
            false => ColumnPlan::of(&mask, revealed).map(Arc::new),
        };
        Ok(Projection {
            mask: Arc::new(mask),
            fields,
            hidden: caller.hidden_namespaces(),
            sensitive: caller.sensitive.clone(),
            reveal,
            columns,
        })
    }

    /// How users are written from the index's columns, when every field of the mask has a
    /// faithful one (`None`: read the stored users).
    pub fn columns(&self) -> Option<&Arc<ColumnPlan>> {
        self.columns.as_ref()
    }

    /// Whether the mask asks for the id alone (answered without reading stored users).
    pub fn ids_only(&self) -> bool {
        ids_only(&self.fields)
    }

    /// Whether the mask is empty or the id alone.
    pub fn is_empty_or_ids_only(&self) -> bool {
        self.fields.is_empty() || self.ids_only()
    }

    /// A stored user (sensitive values already cut out), with its sealed values opened for a
    /// caller who may read them, and its memberships (`organizations`, a JSON array of the
    /// views `org.*` paths address) under `org` when it has any.
    pub fn apply_stored(
        &self,
        id: &str,
        raw_json: &str,
        sealed: Option<&str>,
        organizations: Option<&str>,
    ) -> Result<String, Error> {
        let opened = match (&self.sensitive, sealed, self.reveal) {
            (Some(sensitive), Some(sealed), true) => sensitive
                .reveal(id, sealed)
                .map_err(|e| Error::Internal(e.to_string()))?,
            _ => Vec::new(),
        };
        let organizations = organizations.filter(|views| {
            *views != "[]" && (self.mask.all || self.mask.children.contains_key(ORG_KEY))
        });
        self.project(id, raw_json, false, opened, organizations)
    }

    /// The user stored at `address`, projected ([`Projection::apply_stored`]).
    pub fn apply_at(
        &self,
        snapshot: &Snapshot,
        id: &str,
        address: DocAddress,
    ) -> Result<String, Error> {
        let stored = snapshot.stored_at(address)?;
        self.apply_stored(
            id,
            &stored.raw_json,
            stored.sealed.as_deref(),
            stored.organizations.as_deref(),
        )
    }

    /// A user's JSON as Clerk sent it (a write-through's answer): its sensitive values are
    /// still in it, and are cut out unless the caller may read them.
    pub fn apply_clerk(&self, id: &str, raw_json: &str) -> Result<String, Error> {
        let strip = self.sensitive.is_some() && !self.reveal;
        self.project(id, raw_json, strip, Vec::new(), None)
    }

    fn project(
        &self,
        id: &str,
        raw_json: &str,
        strip: bool,
        opened: Vec<(MetadataNamespace, Vec<String>, Value)>,
        organizations: Option<&str>,
    ) -> Result<String, Error> {
        let invalid = |e: serde_json::Error| {
            Error::Internal(format!("stored user {id} is not valid json: {e}"))
        };
        if self.hidden.is_empty() && !strip && opened.is_empty() {
            match organizations {
                None => return self.mask.project_json(raw_json).map_err(invalid),
                // Everything, memberships included: spliced in without parsing the user.
                Some(views) if self.mask.all => {
                    if let Some(json) = with_org(raw_json, views) {
                        return Ok(json);
                    }
                }
                Some(_) => {}
            }
        }
        let mut user: Value = serde_json::from_str(raw_json).map_err(invalid)?;
        if let (true, Some(sensitive)) = (strip, &self.sensitive) {
            sensitive.strip(&mut user);
        }
        if let Value::Object(map) = &mut user {
            for namespace in &self.hidden {
                map.shift_remove(namespace.field_name());
            }
            for (namespace, keys, value) in opened {
                insert(map, namespace.field_name(), &keys, value);
            }
            if let Some(views) = organizations {
                let views = serde_json::from_str(views).map_err(invalid)?;
                map.insert(ORG_KEY.into(), self.visible_views(views));
            }
        }
        let user = match self.fields.is_empty() {
            true => user,
            false => self.mask.select_user(&user),
        };
        serde_json::to_string(&user).map_err(invalid)
    }
}

/// Where a returned user holds its memberships: the key `org.*` paths start with.
const ORG_KEY: &str = "org";

impl Projection {
    /// Membership views without the metadata the caller may not read: organization and
    /// membership `public` need the `public` scope, `private` the `private` scope.
    fn visible_views(&self, mut views: Value) -> Value {
        let hidden: Vec<&str> = (self.hidden.iter())
            .filter_map(|namespace| match namespace {
                MetadataNamespace::Public => Some("public"),
                MetadataNamespace::Private => Some("private"),
                _ => None,
            })
            .collect();
        if hidden.is_empty() {
            return views;
        }
        for view in views.as_array_mut().into_iter().flatten() {
            let Value::Object(view) = view else { continue };
            for key in &hidden {
                view.shift_remove(*key);
                if let Some(Value::Object(membership)) = view.get_mut("membership") {
                    membership.shift_remove(*key);
                }
            }
        }
        views
    }
}

/// `raw_json` (an object) with `"org": views` appended, or `None` if it is not an object.
fn with_org(raw_json: &str, views: &str) -> Option<String> {
    let body = raw_json.trim_end().strip_suffix('}')?.trim_end();
    let mut json = String::with_capacity(raw_json.len() + views.len() + 8);
    json.push_str(body);
    if !body.ends_with('{') {
        json.push(',');
    }
    json.push_str("\"org\":");
    json.push_str(views);
    json.push('}');
    Some(json)
}

/// Puts `value` at `field.keys...` in `map`, making the objects on the way.
fn insert(map: &mut Map<String, Value>, field: &str, keys: &[String], value: Value) {
    let mut current = map
        .entry(field.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    for key in keys.iter().take(keys.len().saturating_sub(1)) {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        current = current
            .as_object_mut()
            .expect("made an object above")
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !current.is_object() {
        *current = Value::Object(Map::new());
    }
    if let (Some(object), Some(last)) = (current.as_object_mut(), keys.last()) {
        object.insert(last.clone(), value);
    }
}

/// Whether a field mask asks for the id alone, which the index answers without reading stored
/// users.
pub fn ids_only(paths: &[String]) -> bool {
    paths.len() == 1 && paths[0] == "id"
}

/// `{"id": ...}`: the projection of any user to `["id"]`.
pub fn id_json(id: &str) -> String {
    // Written directly: an export of 100k ids otherwise spends most of its time building and
    // dropping one-key JSON maps.
    let mut json = String::with_capacity(id.len() + 10);
    json.push_str("{\"id\":");
    push_json_str(&mut json, id);
    json.push('}');
    json
}

/// Refuses masks too large to be meant, without repeating them.
fn check_mask_size(fields: &[String]) -> Result<(), Error> {
    if fields.len() > MAX_FIELD_MASK_ENTRIES {
        return Err(Error::invalid(
            "fields",
            format!(
                "fields: at most {MAX_FIELD_MASK_ENTRIES} entries, got {}",
                fields.len()
            ),
        ));
    }
    if let Some((n, field)) = fields
        .iter()
        .enumerate()
        .find(|(_, f)| f.len() > MAX_FIELD_PATH_BYTES)
    {
        return Err(Error::invalid(
            format!("fields[{n}]"),
            format!(
                "fields[{n}] is {} bytes; at most {MAX_FIELD_PATH_BYTES}",
                field.len()
            ),
        ));
    }
    Ok(())
}

/// Keeps only `paths` (dot-separated Clerk JSON paths; `public.`/`private.`/`unsafe.` stand for
/// the metadata objects) plus `id`, in Clerk's own key order. An empty list keeps everything.
pub fn project_json(raw_json: &str, paths: &[String]) -> Result<String, serde_json::Error> {
    if paths.is_empty() {
        return Ok(raw_json.to_string());
    }
    Mask::of(paths).project_json(raw_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::sensitive::{KeyRing, SensitivePaths, test_ring};

    #[test]
    fn sensitive_values_are_opened_for_the_sensitive_scope_and_cut_for_everyone_else() {
        let sensitive = Arc::new(Sensitive::new(
            SensitivePaths::parse("private.ssn").unwrap(),
            KeyRing::parse(&test_ring(&["k1"])).unwrap(),
        ));
        let clerk = r#"{"id":"user_1","private_metadata":{"ltv":3,"ssn":"123-45-6789"},"public_metadata":{}}"#;
        let raw = serde_json::value::RawValue::from_string(clerk.to_string()).unwrap();
        let user = crate::clerk::model::parse_user(&raw).unwrap();
        let sealed = sensitive.seal_user(&user).unwrap().unwrap();
        let values = sealed.sealed.as_ref().map(|s| s.values.as_str());
        let caller = |scopes: &str| Caller {
            sensitive: Some(sensitive.clone()),
            ..Caller::with_scopes("k", crate::auth::Scopes::parse_list(scopes).unwrap())
        };
        let reader = Projection::new(vec![], &caller("public,private,sensitive")).unwrap();
        let shown = reader
            .apply_stored("user_1", &sealed.raw_json, values, None)
            .unwrap();
        assert_eq!(
            shown,
            r#"{"id":"user_1","private_metadata":{"ltv":3,"ssn":"123-45-6789"},"public_metadata":{}}"#
        );
        // Only the sensitive tier: private.ssn without the rest of private.
        let sensitive_only = Projection::new(vec![], &caller("sensitive")).unwrap();
        assert_eq!(
            sensitive_only
                .apply_stored("user_1", &sealed.raw_json, values, None)
                .unwrap(),
            r#"{"id":"user_1","private_metadata":{"ssn":"123-45-6789"}}"#
        );
        let private = Projection::new(vec![], &caller("public,private")).unwrap();
        for json in [
            private
                .apply_stored("user_1", &sealed.raw_json, values, None)
                .unwrap(),
            private.apply_clerk("user_1", clerk).unwrap(),
        ] {
            assert_eq!(
                json,
                r#"{"id":"user_1","private_metadata":{"ltv":3},"public_metadata":{}}"#
            );
        }
        assert_eq!(reader.apply_clerk("user_1", clerk).unwrap(), clerk);
        let masked = Projection::new(vec!["private.ssn".into()], &caller("sensitive")).unwrap();
        assert_eq!(
            masked
                .apply_stored("user_1", &sealed.raw_json, values, None)
                .unwrap(),
            r#"{"id":"user_1","private_metadata":{"ssn":"123-45-6789"}}"#
        );
        let error = Projection::new(vec!["private.ssn".into()], &caller("private")).unwrap_err();
        assert!(
            error.to_string().contains("lacks the sensitive scope"),
            "{error}"
        );
    }

    #[test]
    fn keeps_requested_paths_and_the_id() {
        let raw = r#"{"id":"user_1","first_name":"Ann","public_metadata":{"plan":"pro","tier":"gold"},"private_metadata":{"ltv":3}}"#;
        let projected = project_json(
            raw,
            &[
                "public.plan".into(),
                "first_name".into(),
                "missing.key".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            projected,
            r#"{"id":"user_1","first_name":"Ann","public_metadata":{"plan":"pro"}}"#
        );
        assert_eq!(project_json(raw, &[]).unwrap(), raw);
    }

    #[test]
    fn namespaces_the_caller_cannot_read_are_left_out() {
        let raw = r#"{"id":"user_1","first_name":"Ann","public_metadata":{"plan":"pro"},"private_metadata":{"ltv":3},"unsafe_metadata":{}}"#;
        let caller = |scopes: &str| {
            Caller::with_scopes("k", crate::auth::Scopes::parse_list(scopes).unwrap())
        };
        let everything = Projection::new(vec![], &caller("public,private,unsafe")).unwrap();
        assert_eq!(
            everything.apply_stored("user_1", raw, None, None).unwrap(),
            raw
        );
        let public = Projection::new(vec![], &caller("public")).unwrap();
        assert_eq!(
            public.apply_stored("user_1", raw, None, None).unwrap(),
            r#"{"id":"user_1","first_name":"Ann","public_metadata":{"plan":"pro"}}"#
        );
        let masked = Projection::new(vec!["public.plan".into()], &caller("public")).unwrap();
        assert_eq!(
            masked.apply_stored("user_1", raw, None, None).unwrap(),
            r#"{"id":"user_1","public_metadata":{"plan":"pro"}}"#
        );
        let error = Projection::new(vec!["private.ltv".into()], &caller("public")).unwrap_err();
        assert!(matches!(error, Error::PermissionDenied(_)), "{error}");
    }

    #[test]
    fn the_id_only_shortcut_equals_the_projection() {
        let raw = r#"{"object":"user","id":"user_1","first_name":"Ann"}"#;
        let mask = vec!["id".to_string()];
        assert!(ids_only(&mask));
        assert_eq!(id_json("user_1"), project_json(raw, &mask).unwrap());
        assert!(!ids_only(&["id".into(), "first_name".into()]));
    }

    #[test]
    fn masks_are_bounded_and_wide_ones_select_like_narrow_ones() {
        let caller = Caller::unrestricted();
        let entries = |n: usize| (0..n).map(|i| format!("public.k{i}")).collect::<Vec<_>>();
        assert!(Projection::new(entries(MAX_FIELD_MASK_ENTRIES), &caller).is_ok());
        for refused in [
            entries(MAX_FIELD_MASK_ENTRIES + 1),
            entries(1_000_000),
            vec![format!("public.{}", "k".repeat(1 << 20))],
        ] {
            let error = Projection::new(refused, &caller).unwrap_err().to_string();
            assert!(error.len() < 100, "not repeated: {error:.100}");
        }
        // Overlapping entries: the wider one wins, in Clerk's key order.
        let raw = r#"{"id":"user_1","public_metadata":{"a":{"b":1,"c":2},"d":3},"first_name":"A"}"#;
        let mask = |fields: &[&str]| {
            let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            Projection::new(fields, &caller)
                .unwrap()
                .apply_stored("user_1", raw, None, None)
                .unwrap()
        };
        assert_eq!(
            mask(&["public.a.b", "public.a", "first_name"]),
            r#"{"id":"user_1","public_metadata":{"a":{"b":1,"c":2}},"first_name":"A"}"#
        );
        assert_eq!(
            mask(&["public.a.c", "public.d"]),
            r#"{"id":"user_1","public_metadata":{"a":{"c":2},"d":3}}"#
        );
        assert_eq!(mask(&["."]), raw, "an empty path is the whole user");
    }

    #[test]
    fn memberships_are_returned_under_org_with_what_the_caller_may_read() {
        let raw = r#"{"id":"user_1","public_metadata":{"a":1}}"#;
        let views = r#"[{"id":"org_1","role":"org:admin","public":{"plan":"pro"},"private":{"mrr":5},"membership":{"public":{"t":"x"},"private":{"n":1},"created_at":3}}]"#;
        let caller = |scopes: &str| {
            Caller::with_scopes("k", crate::auth::Scopes::parse_list(scopes).unwrap())
        };
        let shown = |fields: &[&str], scopes: &str, views: &str| -> Value {
            let fields = fields.iter().map(|f| f.to_string()).collect();
            let projection = Projection::new(fields, &caller(scopes)).unwrap();
            let json = projection
                .apply_stored("user_1", raw, None, Some(views))
                .unwrap();
            serde_json::from_str(&json).unwrap()
        };
        let everything = shown(&[], "public,private,unsafe", views);
        assert_eq!(everything["public_metadata"]["a"], 1);
        assert_eq!(everything["org"][0]["private"]["mrr"], 5);
        assert_eq!(everything["org"][0]["membership"]["private"]["n"], 1);
        let public = shown(&[], "public", views);
        assert_eq!(public["org"][0]["public"]["plan"], "pro");
        assert_eq!(public["org"][0]["membership"]["public"]["t"], "x");
        assert!(public["org"][0].get("private").is_none(), "{public}");
        assert!(public["org"][0]["membership"].get("private").is_none());
        assert_eq!(
            shown(&["org.role"], "public", views),
            serde_json::json!({"id": "user_1", "org": [{"role": "org:admin"}]})
        );
        // No memberships, or a mask that does not ask for them: no `org`.
        assert_eq!(shown(&[], "public,private,unsafe", "[]").to_string(), raw);
        assert!(shown(&["public"], "public", views).get("org").is_none());
        // Their metadata needs its scope when a mask names it.
        let error = Projection::new(vec!["org.private.mrr".into()], &caller("public")).unwrap_err();
        assert!(
            error.to_string().contains("lacks the private scope"),
            "{error}"
        );
        Projection::new(vec!["org.public.plan".into()], &caller("public")).unwrap();
    }
}
