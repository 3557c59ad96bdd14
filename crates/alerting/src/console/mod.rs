//! The web console: a page of plain JavaScript over the JSON API, embedded in the binary and served at `/`.
//!
//! The assets (`crates/alerting/console/`) are static: they hold no data and need no token, so they are served
//! open; everything they show comes from the API, with the token the person gives. Every answer carries a
//! Content-Security-Policy that allows scripts and styles from this origin only (no inline script), and the page
//! may not be framed. Host metrics for the Hosts page come from [`hosts`].

mod config;
pub mod hosts;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

pub use config::ConsoleConfig;

/// A part of the process other than the alerting service (`gomon up`'s aggregator), as the Status page shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ComponentStatus {
    /// What it is: `remote write`.
    pub name: String,
    /// `ok`, `retrying`, `blocked` or `off`.
    pub state: String,
    /// More, in a sentence.
    pub detail: String,
}

/// The other roles of this process, asked for their state when the console reads it.
pub trait Neighbour: Send + Sync {
    /// The state of each part now.
    fn status(&self) -> Vec<ComponentStatus>;
}

/// The policy of every console answer: this origin only, no inline script or style, no framing, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The console's files, as built into the binary.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../console/index.html"),
    },
    Asset {
        path: "/console/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/app.js"),
    },
    Asset {
        path: "/console/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/app.css"),
    },
    Asset {
        path: "/console/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../console/favicon.svg"),
    },
];

/// Total size of the console's files, in bytes.
pub fn assets_size() -> usize {
    ASSETS.iter().map(|asset| asset.body.len()).sum()
}

/// The routes serving the console's files.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        let etag = format!("\"{}\"", hex(&Sha256::digest(asset.body)[..12]));
        router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { serve(asset, &etag, &headers) }),
        )
    })
}

fn serve(asset: &'static Asset, etag: &str, headers: &HeaderMap) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    // Revalidated on every load, so that an upgrade is seen at once; unchanged files cost a 304.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_are_small_and_free_of_inline_script() {
        assert!(assets_size() < 300 * 1024, "{} bytes", assets_size());
        let index = std::str::from_utf8(ASSETS[0].body).expect("UTF-8");
        // Every script is a file of this origin: the policy forbids inline ones.
        assert_eq!(index.matches("<script").count(), 1);
        assert!(index.contains("<script src=\"/console/app.js\""));
        assert!(!index.contains("style="));
        let script = std::str::from_utf8(ASSETS[1].body).expect("UTF-8");
        // Data reaches the page as text only.
        assert!(!script.contains(".innerHTML"));
        assert!(!script.contains("insertAdjacentHTML"));
        assert!(!script.contains("eval("));
    }
}
