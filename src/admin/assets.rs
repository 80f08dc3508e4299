//! The dashboard: one HTML page with its styles and scripts inlined, built
//! into the binary from the files in `dashboard/`. It is served without the
//! token (it holds no data: the page asks for the token and sends it with
//! each of its calls), under a content security policy that lets only its
//! own inlined code run (a fresh nonce per answer) and only talk to its
//! origin.

use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use http::{HeaderValue, Method, Response};
use rand::RngExt;

use super::reply::{head, method_not_allowed, options, AdminBody, Reply};

const TEMPLATE: &str = include_str!("dashboard/index.html");
const STYLE: &str = include_str!("dashboard/dashboard.css");
const CHARTS: &str = include_str!("dashboard/charts.js");
const REPLICAS: &str = include_str!("dashboard/replicas.js");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");

/// Where the page is served: the admin's root (`/admin/` when nested
/// under `/admin`) and `/index.html`.
pub(crate) fn is_page(path: &str) -> bool {
    matches!(path, "" | "/" | "/index.html")
}

/// The page's answer to `method`: GET and HEAD, OPTIONS, else 405.
pub(crate) fn page(method: &Method) -> Reply {
    match *method {
        Method::GET => page_response(),
        Method::HEAD => head(page_response()),
        Method::OPTIONS => options(&Method::GET),
        _ => method_not_allowed(&Method::GET),
    }
}

fn page_response() -> Reply {
    let nonce = format!("{:032x}", rand::rng().random::<u128>());
    let mut res = Response::new(AdminBody::full(render(&nonce)));
    let headers = res.headers_mut();
    let html = HeaderValue::from_static("text/html; charset=utf-8");
    headers.insert(CONTENT_TYPE, html);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let policy = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    res
}

/// The page with `nonce` on its style and script elements. The nonce goes
/// into the template before the assets do, so nothing in them is replaced.
fn render(nonce: &str) -> String {
    TEMPLATE
        .replace("{{nonce}}", nonce)
        .replacen("/*{{style}}*/", STYLE, 1)
        .replacen("/*{{charts}}*/", CHARTS, 1)
        .replacen("/*{{replicas}}*/", REPLICAS, 1)
        .replacen("/*{{script}}*/", SCRIPT, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_assets_under_a_nonce() {
        for marker in [
            "{{nonce}}",
            "/*{{style}}*/",
            "/*{{charts}}*/",
            "/*{{replicas}}*/",
            "/*{{script}}*/",
        ] {
            assert!(TEMPLATE.contains(marker), "{marker}");
        }
        let assets = [
            ("css", STYLE),
            ("charts", CHARTS),
            ("replicas", REPLICAS),
            ("script", SCRIPT),
        ];
        for (name, asset) in assets {
            // An asset that closed its element would end the inlining early.
            for closing in ["</script", "</style", "{{"] {
                assert!(!asset.contains(closing), "{name} contains {closing}");
            }
        }
        let page = render("abc123");
        assert_eq!(page.matches("nonce=\"abc123\"").count(), 4);
        for asset in [CHARTS, REPLICAS, SCRIPT, STYLE] {
            assert!(page.contains(asset));
        }
        assert!(!page.contains("{{"));
        assert!(page.starts_with("<!doctype html>"));
    }

    #[test]
    fn each_answer_has_its_own_nonce_in_its_policy() {
        let policy = |r: &Reply| {
            r.headers()[CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .to_owned()
        };
        let (a, b) = (page(&Method::GET), page(&Method::GET));
        assert_ne!(policy(&a), policy(&b));
        assert!(policy(&a).contains("script-src 'nonce-"));
        assert!(!policy(&a).contains("unsafe-inline"));
        assert_eq!(
            page(&Method::POST).status(),
            http::StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(page(&Method::HEAD).status(), http::StatusCode::OK);
    }
}
