//! Which function calls a replica may run.
//!
//! Postgres marks functions immutable, stable or volatile, but the router has no catalog to
//! ask, and volatility is not the question anyway: `random()` is volatile and harmless on a
//! replica, `pg_current_wal_lsn()` is stable and fails there. So the classifier carries a
//! curated list of common built-ins that read only ([`READ_ONLY`]), a list of built-ins that
//! write or only work on a primary ([`primary_only`]), and the user's two lists. Every other
//! function is unknown and sends its statement to the primary.
//!
//! Built-ins match when called unqualified or as `pg_catalog.name`. User entries are
//! compared ASCII-case-insensitively; an entry without a schema (`price_of`) matches the
//! function called with any schema or none, an entry with one (`shop.price_of`) only a call
//! qualified the same way, since the router cannot tell where `search_path` resolves an
//! unqualified call. For `write_functions` that doubt cuts the other way: `shop.audit` also
//! matches an unqualified `audit(…)`.
//!
//! Precedence: the built-in primary-only list (a user cannot make `nextval` a read, a
//! replica would refuse it), then `write_functions`, then `read_only_functions`, then the
//! built-in read-only list.

use std::collections::HashSet;
use std::sync::Arc;

use super::Reason;

/// Built-ins that only read, called by applications often enough to be worth knowing, by
/// group, separated by whitespace. Volatile ones such as `random()` or `clock_timestamp()`
/// are here: they change nothing. None writes, takes a transaction ID or needs the primary.
pub(super) const READ_ONLY: &[&str] = &[
    // aggregates and window functions
    "count sum avg min max array_agg string_agg bool_and bool_or every bit_and bit_or \
     bit_xor json_agg jsonb_agg json_object_agg jsonb_object_agg json_agg_strict \
     jsonb_agg_strict stddev stddev_pop stddev_samp variance var_pop var_samp corr \
     covar_pop covar_samp percentile_cont percentile_disc mode any_value row_number rank \
     dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value \
     grouping",
    // time
    "now current_timestamp clock_timestamp statement_timestamp transaction_timestamp \
     timeofday date_trunc date_part date_bin extract age make_date make_time make_timestamp \
     make_timestamptz make_interval to_timestamp to_date to_char to_number justify_days \
     justify_hours justify_interval isfinite timezone overlaps",
    // strings
    "lower upper initcap length char_length character_length octet_length bit_length substr \
     substring position strpos btrim ltrim rtrim lpad rpad replace concat concat_ws format \
     left right repeat reverse split_part translate starts_with ascii chr md5 sha224 sha256 \
     sha384 sha512 encode decode regexp_replace regexp_match regexp_matches \
     regexp_split_to_array regexp_split_to_table regexp_like regexp_count regexp_instr \
     regexp_substr string_to_array string_to_table array_to_string quote_ident \
     quote_literal quote_nullable to_hex overlay normalize is_normalized unistr \
     convert_from convert_to like_escape similar_to_escape pg_collation_for",
    // numbers
    "abs round ceil ceiling floor trunc sqrt cbrt power pow exp ln log log10 mod div sign \
     pi degrees radians sin cos tan asin acos atan atan2 gcd lcm factorial width_bucket \
     scale trim_scale random random_normal gen_random_uuid greatest least coalesce nullif",
    // arrays and sets
    "array_length cardinality unnest array_append array_prepend array_cat array_position \
     array_positions array_remove array_replace array_dims array_lower array_upper \
     array_ndims generate_series generate_subscripts",
    // json
    "to_json to_jsonb row_to_json array_to_json json_build_object jsonb_build_object \
     json_build_array jsonb_build_array json_object jsonb_object json_array_length \
     jsonb_array_length json_each jsonb_each json_each_text jsonb_each_text \
     json_extract_path jsonb_extract_path json_extract_path_text jsonb_extract_path_text \
     json_object_keys jsonb_object_keys json_array_elements jsonb_array_elements \
     json_array_elements_text jsonb_array_elements_text json_typeof jsonb_typeof \
     json_strip_nulls jsonb_strip_nulls jsonb_set jsonb_set_lax jsonb_insert jsonb_pretty \
     jsonb_path_exists jsonb_path_match jsonb_path_query jsonb_path_query_array \
     jsonb_path_query_first json_populate_record jsonb_populate_record \
     json_populate_recordset jsonb_populate_recordset json_to_record jsonb_to_record \
     json_to_recordset jsonb_to_recordset",
    // full text search
    "to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank \
     ts_rank_cd ts_headline setweight",
    // system information
    "version current_setting current_database current_schema current_schemas pg_backend_pid \
     pg_is_in_recovery pg_postmaster_start_time pg_conf_load_time pg_last_wal_receive_lsn \
     pg_last_wal_replay_lsn pg_last_xact_replay_timestamp pg_wal_lsn_diff pg_size_pretty \
     pg_size_bytes pg_relation_size pg_total_relation_size pg_table_size pg_indexes_size \
     pg_database_size pg_column_size pg_typeof format_type pg_get_viewdef pg_get_indexdef \
     pg_get_constraintdef pg_get_functiondef pg_get_expr pg_get_userbyid \
     pg_get_serial_sequence obj_description col_description to_regclass to_regtype \
     to_regproc has_table_privilege has_schema_privilege has_database_privilege \
     has_column_privilege has_function_privilege pg_has_role pg_table_is_visible \
     pg_encoding_to_char inet_client_addr inet_server_addr pg_sleep pg_current_snapshot \
     pg_snapshot_xmin",
];

/// Built-ins that write, hold state beyond the statement, or fail on a standby, with the
/// reason they give. `None` for every other name.
pub(super) fn primary_only(name: &str) -> Option<Reason> {
    match name {
        "nextval" | "setval" | "currval" | "lastval" => Some(Reason::Sequence),
        _ if name.starts_with("pg_advisory_") || name.starts_with("pg_try_advisory_") => {
            Some(Reason::AdvisoryLock)
        }
        "set_config"
        | "pg_notify"
        | "txid_current"
        | "txid_current_if_assigned"
        | "pg_current_xact_id"
        | "pg_current_xact_id_if_assigned"
        | "pg_current_wal_lsn"
        | "pg_current_wal_insert_lsn"
        | "pg_current_wal_flush_lsn"
        | "pg_terminate_backend"
        | "pg_cancel_backend"
        | "pg_reload_conf"
        | "pg_rotate_logfile"
        | "pg_switch_wal"
        | "pg_create_restore_point"
        | "pg_promote"
        | "pg_logical_emit_message"
        | "pg_backup_start"
        | "pg_backup_stop"
        | "setseed"
        | "pg_import_system_collations" => Some(Reason::WriteFunction(name.into())),
        _ if name.starts_with("lo_")
            || name.starts_with("dblink")
            || name.starts_with("pg_stat_reset")
            || name.starts_with("pg_replication_origin_")
            || (name.starts_with("pg_create_") && name.ends_with("_replication_slot"))
            || name.starts_with("pg_drop_replication_slot") =>
        {
            Some(Reason::WriteFunction(name.into()))
        }
        _ => None,
    }
}

/// The built-in and user function lists of one classifier.
#[derive(Debug)]
pub(super) struct FunctionLists {
    builtin: HashSet<&'static str>,
    read_only: UserList,
    write: UserList,
}

/// A user list: full entries as written (lowercased) and, for `write_functions`, the bare
/// names of the qualified entries too.
#[derive(Debug, Default)]
struct UserList {
    entries: HashSet<String>,
    bare_of_qualified: HashSet<String>,
}

impl UserList {
    fn new(names: &[String]) -> Self {
        let mut list = UserList::default();
        for name in names {
            let name: String = name
                .trim()
                .chars()
                .filter(|c| *c != '"')
                .map(|c| c.to_ascii_lowercase())
                .collect();
            if let Some((_, bare)) = name.rsplit_once('.') {
                list.bare_of_qualified.insert(bare.to_string());
            }
            list.entries.insert(name);
        }
        list
    }

    /// Does the list name this call (`bare` is the last part of `full`)?
    fn matches(&self, full: &str, bare: &str, unqualified_matches_qualified: bool) -> bool {
        self.entries.contains(full)
            || self.entries.contains(bare)
            || (unqualified_matches_qualified
                && full == bare
                && self.bare_of_qualified.contains(bare))
    }
}

impl FunctionLists {
    pub(super) fn new(read_only: &[String], write: &[String]) -> Self {
        Self {
            builtin: READ_ONLY
                .iter()
                .flat_map(|group| group.split_whitespace())
                .collect(),
            read_only: UserList::new(read_only),
            write: UserList::new(write),
        }
    }

    /// `Ok` when a replica may run a call to `name` (lowercased, parts joined by `.`),
    /// otherwise the reason it needs the primary.
    pub(super) fn check(&self, name: &str) -> Result<(), Reason> {
        let (schema, bare) = match name.rsplit_once('.') {
            Some((schema, bare)) => (Some(schema), bare),
            None => (None, name),
        };
        let builtin = matches!(schema, None | Some("pg_catalog"));
        if builtin {
            if let Some(reason) = primary_only(bare) {
                return Err(reason);
            }
        }
        if self.write.matches(name, bare, true) {
            return Err(Reason::WriteFunction(Arc::from(name)));
        }
        if self.read_only.matches(name, bare, false) || (builtin && self.builtin.contains(bare)) {
            return Ok(());
        }
        Err(Reason::UnknownFunction(Arc::from(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_lists_are_lowercase_names_and_do_not_overlap() {
        let names: Vec<&str> = READ_ONLY
            .iter()
            .flat_map(|g| g.split_whitespace())
            .collect();
        assert!(names.len() > 250, "{} names", names.len());
        for name in names {
            let plain = name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            assert!(plain, "{name}");
            assert_eq!(primary_only(name), None, "{name}");
        }
    }
}
