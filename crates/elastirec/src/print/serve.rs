//! Reports of the commands that deliver the lists: `serve` (its start-up lines), `show` (one
//! user's history and recommendations, with titles) and `sink`.

use std::net::SocketAddr;

use elastirec_core::Lake;
use elastirec_serve::Snapshot;
use elastirec_sink::SinkReport;

/// `serve`: the night served (if any) and where.
pub fn print_serving(snapshot: Option<&Snapshot>, lake: &Lake, local: SocketAddr, token: bool) {
    match snapshot {
        Some(s) => println!(
            "serving night {} ({} users) from {}",
            s.night(),
            s.users(),
            lake.url()
        ),
        None => println!("no night published yet in {}; polling for one", lake.url()),
    }
    println!(
        "listening on http://{local}/ (token {})",
        if token { "required" } else { "not required" }
    );
}

/// An item's title, or `(no title)`.
fn title(snapshot: &Snapshot, item: i64) -> String {
    snapshot
        .item_meta(item)
        .and_then(|m| m.title.clone())
        .unwrap_or_else(|| "(no title)".into())
}

/// An item's external id, as producers sent it.
fn item_name(snapshot: &Snapshot, item: i64) -> std::borrow::Cow<'_, str> {
    snapshot.ids().items.external(item)
}

/// `show`: the user (`user` as given, `internal` its id in the night's dictionary, if known)
/// and the first `history` entries of their history.
pub fn print_user_history(snapshot: &Snapshot, user: &str, internal: Option<i64>, history: usize) {
    println!("user {user}, night {}", snapshot.night());
    match internal.and_then(|u| snapshot.history(u)) {
        Some(entries) => {
            println!(
                "history ({} items{}):",
                entries.len(),
                if entries.len() > history {
                    format!(", first {history}")
                } else {
                    String::new()
                }
            );
            for h in entries.iter().take(history) {
                let detail = match (h.value, h.events) {
                    (Some(v), Some(e)) => format!("value {v}, {e} events"),
                    _ => "before the window".into(),
                };
                println!(
                    "  {:>8}  {:<50}  {detail}",
                    item_name(snapshot, h.item_id),
                    title(snapshot, h.item_id)
                );
            }
        }
        None => println!("history: none up to night {}", snapshot.night()),
    }
}

/// `show`: the user's top K (`source`; `fallback` when the user has no stored list), with the
/// history items that explain each.
pub fn print_user_recommendations(
    snapshot: &Snapshot,
    source: &str,
    fallback: bool,
    items: &[(i64, f32, u32, &[i64])],
) {
    println!(
        "top {} ({}{}):",
        items.len(),
        source,
        if fallback {
            ", fallback: user unknown to this night"
        } else {
            ""
        }
    );
    for (item, score, rank, because) in items {
        let because = if because.is_empty() {
            String::new()
        } else {
            format!(
                "  because: {}",
                because
                    .iter()
                    .map(|b| title(snapshot, *b))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        println!(
            "  {rank:>3}. {:>8}  {:<50} {score:>9.4}{because}",
            item_name(snapshot, *item),
            title(snapshot, *item)
        );
    }
}

/// `sink`: what was copied where.
pub fn print_sink(r: &SinkReport) {
    println!(
        "night {}: copied {} users ({} rows) to {} in {:.1} s",
        r.night, r.users, r.rows, r.target, r.seconds
    );
}
