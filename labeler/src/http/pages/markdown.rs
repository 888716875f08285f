//! Project guidelines: admins write them in Markdown, annotators read them as HTML one click
//! away from the item. Guidelines are user input, so the HTML is made safe twice over: raw
//! HTML in the Markdown is shown as text, not passed through, and the rendered HTML is then
//! sanitized with ammonia (an allow-list of tags and attributes; links only to http, https
//! and mailto, so a `javascript:` link loses its target; no event handlers, no `style`).

use pulldown_cmark::{Event, Options, Parser};

/// The guidelines as sanitized HTML, ready to be inserted into a page unescaped.
pub fn to_html(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    // Raw HTML blocks and inline tags become text: guidelines are Markdown, not HTML.
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        other => other,
    });
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto"].into())
        .clean(&html)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::to_html;

    #[test]
    fn headings_lists_links_and_emphasis_render() {
        let html = to_html(
            "# Judging answers\n\nPrefer the **correct** answer.\n\n\
             - check facts\n- then style\n\n1. read\n2. choose\n\n\
             See [the rubric](https://example.org/rubric).\n",
        );

        assert!(html.contains("<h1>Judging answers</h1>"), "{html}");
        assert!(html.contains("<strong>correct</strong>"), "{html}");
        assert!(
            html.contains("<ul>\n<li>check facts</li>\n<li>then style</li>\n</ul>"),
            "{html}"
        );
        assert!(html.contains("<ol>\n<li>read</li>"), "{html}");
        assert!(
            html.contains(
                r#"<a href="https://example.org/rubric" rel="noopener noreferrer">the rubric</a>"#
            ),
            "{html}"
        );
    }

    #[test]
    fn scripts_and_javascript_links_are_neutralised() {
        let html = to_html(
            "<script>alert(1)</script>\n\nText <img src=x onerror=alert(2)> here.\n\n\
             [click](javascript:alert(3)) and <a href=\"javascript:alert(4)\">this</a>\n\n\
             [data](data:text/html;base64,PHNjcmlwdD4=)\n",
        );

        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("javascript:alert(3)"), "{html}");
        assert!(!html.contains("<a href=\"javascript"), "{html}");
        assert!(!html.contains("<a href=\"data:"), "{html}");
        assert!(
            html.contains(r#"<a rel="noopener noreferrer">data</a>"#),
            "{html}"
        );
        // Raw HTML is shown as text, so the reader sees what was written.
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&lt;img src=x onerror=alert(2)&gt;"),
            "{html}"
        );
        assert!(html.contains(">click</a>"), "{html}");
    }

    #[test]
    fn empty_guidelines_render_as_nothing() {
        assert_eq!(to_html(""), "");
    }
}
