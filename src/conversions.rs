//! Every conversion between the WIT types and the engine's, written once for both sides of the
//! line. The component's bindings (wit-bindgen) and a wasmtime host's (`bindgen!`) generate the
//! same records under different paths, so [`wit_conversions!`](crate::wit_conversions) is expanded in each side's one
//! conversion module (`component.rs`, the host's `bindings.rs`) with that side's paths. A change
//! to a WIT record then fails to compile on both sides at once, instead of drifting on one.

/// Expands the `From` impls between the WIT types under `collector = …` / `store = …` (the
/// generated modules of the `collector` and `object-store` interfaces) and the engine's types;
/// `store = …` alone for a side that has only the store (the edge store component).
#[macro_export]
macro_rules! wit_conversions {
    (collector = $($c:ident)::+, store = $($s:ident)::+) => {
        impl From<$crate::settings::RawConfig> for $($c)::+::Config {
            fn from(raw: $crate::settings::RawConfig) -> Self {
                use $($c)::+ as wit;
                use $crate::settings::ControlPlane;
                let endpoint = match (raw.base_url, raw.plane) {
                    (Some(url), _) => wit::Endpoint::BaseUrl(url),
                    (None, plane) => wit::Endpoint::Plane(plane.unwrap_or(ControlPlane::Us).into()),
                };
                $crate::wit_conversions!(@same raw { endpoint, paging: raw.paging.into() })
            }
        }

        impl From<$($c)::+::Config> for $crate::settings::RawConfig {
            fn from(config: $($c)::+::Config) -> Self {
                use $($c)::+ as wit;
                let (plane, base_url) = match config.endpoint {
                    wit::Endpoint::Plane(p) => (Some(p.into()), None),
                    wit::Endpoint::BaseUrl(url) => (None, Some(url)),
                };
                $crate::wit_conversions!(@same config { plane, base_url, paging: config.paging.into() })
            }
        }

        $crate::wit_conversions!(@enum $($c)::+::ControlPlane, $crate::settings::ControlPlane { Us, Eu, Gov, Ca, Jp });
        $crate::wit_conversions!(@enum $($c)::+::Paging, $crate::settings::Paging { Cursor, Offset });

        $crate::wit_conversions!(@enum $($c)::+::ErrorKind, $crate::settings::ErrorKind {
            Config, Unauthorized, Forbidden, Api, Unavailable, Denied, Storage, Conflict, Checkpoint, PageCap
        });

        impl From<$crate::settings::OrgSummary> for $($c)::+::OrgSummary {
            fn from(s: $crate::settings::OrgSummary) -> Self {
                $crate::wit_conversions!(@summary s)
            }
        }

        impl From<$($c)::+::OrgSummary> for $crate::settings::OrgSummary {
            fn from(s: $($c)::+::OrgSummary) -> Self {
                $crate::wit_conversions!(@summary s)
            }
        }

        impl From<$crate::settings::Failure> for $($c)::+::Failure {
            fn from(f: $crate::settings::Failure) -> Self {
                Self { org_id: f.org_id, kind: f.kind.into(), message: f.message }
            }
        }

        impl From<$($c)::+::Failure> for $crate::settings::Failure {
            fn from(f: $($c)::+::Failure) -> Self {
                Self { org_id: f.org_id, kind: f.kind.into(), message: f.message }
            }
        }

        /// A pass that completed, for the engine's report.
        impl From<$($c)::+::RunSummary> for $crate::collect::PassResult {
            fn from(summary: $($c)::+::RunSummary) -> Self {
                Self { completed: summary.orgs.into_iter().map(Into::into).collect(), failures: Vec::new() }
            }
        }

        /// A pass that failed, for the engine's report.
        impl From<$($c)::+::RunError> for $crate::collect::PassResult {
            fn from(error: $($c)::+::RunError) -> Self {
                Self {
                    completed: error.completed.into_iter().map(Into::into).collect(),
                    failures: error.failures.into_iter().map(Into::into).collect(),
                }
            }
        }

        impl From<$crate::report::Report> for $($c)::+::Report {
            fn from(report: $crate::report::Report) -> Self {
                Self { json: report.json(), lines: report.error_lines().collect(), exit_code: report.exit_code }
            }
        }

        impl From<$($c)::+::Listing> for $crate::verify::Listing {
            fn from(listing: $($c)::+::Listing) -> Self {
                Self {
                    objects: listing.objects,
                    deleted: listing.deleted,
                    checkpoints: listing
                        .checkpoints
                        .into_iter()
                        .map(|c| $crate::verify::ListedCheckpoint {
                            org_id: c.org_id,
                            read_from_ms: c.read_from_ms,
                            next_seq: c.next_seq,
                            lineage: c.lineage,
                        })
                        .collect(),
                }
            }
        }

        impl From<$crate::verify::Listing> for $($c)::+::Listing {
            fn from(listing: $crate::verify::Listing) -> Self {
                Self {
                    objects: listing.objects,
                    deleted: listing.deleted,
                    checkpoints: listing
                        .checkpoints
                        .into_iter()
                        .map(|c| $($c)::+::ListedCheckpoint {
                            org_id: c.org_id,
                            read_from_ms: c.read_from_ms,
                            next_seq: c.next_seq,
                            lineage: c.lineage,
                        })
                        .collect(),
                }
            }
        }

        impl From<$crate::verify::VerifyReport> for $($c)::+::Report {
            fn from(report: $crate::verify::VerifyReport) -> Self {
                Self { json: report.json(), lines: report.lines(), exit_code: report.exit_code() }
            }
        }

        $crate::wit_conversions!(store = $($s)::+);
    };

    // The `object-store` interface alone: the edge store component has no collector.
    (store = $($s:ident)::+) => {
        $crate::wit_conversions!(@enum $($s)::+::StoreError, $crate::platform::StoreError {
            AlreadyExists, GenerationMismatch, Unavailable(message), Denied(message), Other(message)
        });

        $crate::wit_conversions!(@enum $($s)::+::ObjectPresence, $crate::platform::Presence {
            Present, Deleted, Absent, Unknown
        });

        impl From<$($s)::+::Found> for $crate::platform::Found {
            fn from(found: $($s)::+::Found) -> Self {
                Self { live: found.live, deleted: found.deleted }
            }
        }

        impl From<$crate::platform::Found> for $($s)::+::Found {
            fn from(found: $crate::platform::Found) -> Self {
                Self { live: found.live, deleted: found.deleted }
            }
        }

        impl From<$($s)::+::StoredObject> for $crate::platform::Stored {
            fn from(stored: $($s)::+::StoredObject) -> Self {
                Self { data: stored.data, generation: stored.generation }
            }
        }

        impl From<$crate::platform::Stored> for $($s)::+::StoredObject {
            fn from(stored: $crate::platform::Stored) -> Self {
                Self { data: stored.data, generation: stored.generation }
            }
        }
    };

    // The fields a WIT record and the engine's type share, moved across by name.
    (@same $from:ident { $($field:ident $(: $value:expr)?),* $(,)? }) => {
        Self {
            $($field $(: $value)?,)*
            org_ids: $from.org_ids,
            discover_children: $from.discover_children,
            client_id: $from.client_id,
            client_secret: $from.client_secret,
            lookback_seconds: $from.lookback_seconds,
            since_ms: $from.since_ms,
            start_anew: $from.start_anew,
            lag_seconds: $from.lag_seconds,
            overlap_seconds: $from.overlap_seconds,
            page_size: $from.page_size,
            max_pages: $from.max_pages,
            object_max_bytes: $from.object_max_bytes,
            key_prefix: $from.key_prefix,
            state_prefix: $from.state_prefix,
            requests_per_minute: $from.requests_per_minute,
            max_attempts: $from.max_attempts,
            shard_index: $from.shard_index,
            shard_count: $from.shard_count,
            concurrency: $from.concurrency,
            http_timeout_ms: $from.http_timeout_ms,
        }
    };

    (@summary $from:ident) => {
        Self {
            org_id: $from.org_id,
            window_start: $from.window_start,
            window_end: $from.window_end,
            entries_written: $from.entries_written,
            duplicates_skipped: $from.duplicates_skipped,
            objects: $from.objects,
            requests: $from.requests,
            retries: $from.retries,
            throttled_waits: $from.throttled_waits,
            replies_2xx: $from.replies_2xx,
            replies_4xx: $from.replies_4xx,
            replies_5xx: $from.replies_5xx,
            no_reply: $from.no_reply,
            bytes_in: $from.bytes_in,
            bytes_out: $from.bytes_out,
        }
    };

    // A WIT enum or variant and the engine's, case for case, both ways.
    (@enum $wit:ty, $engine:ty { $($case:ident $(($payload:ident))?),* $(,)? }) => {
        impl From<$wit> for $engine {
            fn from(value: $wit) -> Self {
                type Wit = $wit;
                match value {
                    $(Wit::$case $(($payload))? => Self::$case $(($payload))?,)*
                }
            }
        }

        impl From<$engine> for $wit {
            fn from(value: $engine) -> Self {
                type Engine = $engine;
                match value {
                    $(Engine::$case $(($payload))? => Self::$case $(($payload))?,)*
                }
            }
        }
    };
}
