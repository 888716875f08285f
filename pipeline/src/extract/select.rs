//! Which blocks are the main content. Candidates are scored the way Readability does it
//! (each paragraph's worth, from its length and commas, goes to its parent and, less of it,
//! to the ancestors above; tags and class/id hints add or take off; the link density of a
//! candidate scales it down), the best candidate is widened to the siblings that score or
//! read like it, and inside it link lists and boilerplate containers are dropped. When that
//! finds too little, a cascade of looser passes follows, so a page with paragraphs of text
//! never comes out empty: the same scoring ignoring class names (comment sections aside),
//! then every block outside navigation that is not mostly links. A container named like
//! boilerplate that holds most of the page's text is taken for a layout wrapper.

use super::page::{Block, Page};

/// Why a block was kept or dropped, for `--explain`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Kept,
    /// Inside a navigation, sidebar, comment, share, ... container (node index).
    Boilerplate(u32),
    /// Outside the container chosen as main content.
    OutsideMainContent,
    /// Mostly link text (the share of link characters).
    LinkText(f32),
    /// Inside a container of the main content that reads as clutter: few commas and short,
    /// link-heavy or named like boilerplate (node index).
    Clutter(u32),
}

/// The passes of the cascade, strictest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Scored candidates, boilerplate containers by tag and class excluded.
    Scored,
    /// The same, class names ignored (they misfire on some sites) but for comment sections.
    ScoredIgnoringClasses,
    /// Every block outside navigation that is not mostly links.
    AllText,
}

impl Pass {
    pub fn describe(self) -> &'static str {
        match self {
            Pass::Scored => "scored candidates",
            Pass::ScoredIgnoringClasses => {
                "scored candidates, class names ignored but for comments (fallback)"
            }
            Pass::AllText => "all text outside navigation (last fallback)",
        }
    }
}

/// The outcome: a verdict per block, the pass that made it, the chosen container.
#[derive(Debug, Clone)]
pub struct Selection {
    pub pass: Pass,
    pub top: Option<u32>,
    pub verdicts: Vec<Verdict>,
    pub kept_weight: u32,
}

/// A pass that finds at least this much (characters, CJK weighted) is trusted; below it the
/// next pass is tried and the longest result wins.
const ENOUGH: u32 = 250;
/// A block at least this heavy counts as a paragraph for scoring.
const MIN_PARAGRAPH: u32 = 25;
/// A block with more link text than this share is a link list, not prose.
const MAX_LINK_DENSITY: f32 = 0.5;

/// Picks the main content of `page`.
pub fn select(page: &Page<'_>) -> Selection {
    let mut best: Option<Selection> = None;
    for pass in [Pass::Scored, Pass::ScoredIgnoringClasses, Pass::AllText] {
        let selection = run_pass(page, pass);
        if selection.kept_weight >= ENOUGH {
            return selection;
        }
        // Ties go to the later, looser pass: when nothing is found, its verdicts say the most
        // (a link list is "link text", not "outside the main content").
        if best
            .as_ref()
            .is_none_or(|b| selection.kept_weight >= b.kept_weight)
        {
            best = Some(selection);
        }
    }
    best.unwrap_or_else(|| Selection {
        pass: Pass::AllText,
        top: None,
        verdicts: vec![Verdict::OutsideMainContent; page.blocks.len()],
        kept_weight: 0,
    })
}

fn link_density(weight: u32, link_weight: u32) -> f32 {
    if weight == 0 {
        0.0
    } else {
        link_weight as f32 / weight as f32
    }
}

/// The nearest boilerplate container at or above `node`, as this pass sees boilerplate.
fn boilerplate_of(page: &Page<'_>, node: u32, pass: Pass, layout: &[bool]) -> Option<u32> {
    let nodes = &page.nodes;
    if !nodes[node as usize].in_boilerplate {
        return None;
    }
    let mut at = Some(node);
    while let Some(n) = at {
        let hints = nodes[n as usize].hints;
        let by_class = match pass {
            Pass::Scored => hints.boilerplate_class && !layout[n as usize],
            // Class names misled the first pass; comment sections are still not the article.
            Pass::ScoredIgnoringClasses => hints.comments,
            Pass::AllText => false,
        };
        if hints.boilerplate_tag || by_class {
            return Some(n);
        }
        at = nodes[n as usize].parent;
    }
    None
}

fn tag_bonus(tag: &str) -> f32 {
    match tag {
        "div" | "article" | "main" | "section" => 5.0,
        "pre" | "td" | "blockquote" => 3.0,
        "address" | "ol" | "ul" | "dl" | "dd" | "dt" | "li" | "form" => -3.0,
        "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "th" => -5.0,
        _ => 0.0,
    }
}

/// Blocks that count as paragraphs for scoring: list items, headings, captions and table
/// headers are not prose, whatever their length.
fn scored_tag(tag: &str) -> bool {
    !matches!(
        tag,
        "li" | "dt"
            | "dd"
            | "th"
            | "caption"
            | "figcaption"
            | "legend"
            | "summary"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "ul"
            | "ol"
            | "dl"
            | "nav"
            | "aside"
            | "footer"
    )
}

fn paragraph_score(block: &Block) -> f32 {
    1.0 + block.commas as f32 + (block.weight / 100).min(3) as f32
}

fn run_pass(page: &Page<'_>, pass: Pass) -> Selection {
    // A container named like boilerplate that holds most of the page's text is a layout
    // wrapper ("two-col-sidebar-right"), not a sidebar.
    let layout = {
        let mut total = vec![0u32; page.nodes.len()];
        for block in &page.blocks {
            let mut at = Some(block.node);
            while let Some(i) = at {
                total[i as usize] += block.weight;
                at = page.nodes[i as usize].parent;
            }
        }
        let page_total = total[0].max(1);
        // Lists are never layout: a 50-picture gallery of captions is still not the article;
        // nor are comment sections, however long the thread under a short post.
        total
            .iter()
            .zip(&page.nodes)
            .map(|(&t, node)| {
                t * 2 > page_total
                    && !node.hints.comments
                    && !matches!(node.tag, "ul" | "ol" | "li" | "dl")
            })
            .collect::<Vec<bool>>()
    };
    let nodes = &page.nodes;
    let n = nodes.len();
    // Which blocks this pass looks at, and why the others are out.
    let mut verdicts: Vec<Verdict> = page
        .blocks
        .iter()
        .map(|b| match boilerplate_of(page, b.node, pass, &layout) {
            Some(container) => Verdict::Boilerplate(container),
            None => Verdict::Kept,
        })
        .collect();
    let mut weight = vec![0u32; n];
    let mut link_weight = vec![0u32; n];
    for (block, verdict) in page.blocks.iter().zip(&verdicts) {
        if *verdict != Verdict::Kept {
            continue;
        }
        let mut at = Some(block.node);
        while let Some(i) = at {
            weight[i as usize] += block.weight;
            link_weight[i as usize] += block.link_weight;
            at = nodes[i as usize].parent;
        }
    }
    if pass == Pass::AllText {
        return finish(page, pass, None, verdicts, |_| true);
    }

    let mut score = vec![f32::NAN; n];
    let init = |score: &mut Vec<f32>, i: usize| {
        if score[i].is_nan() {
            let node = &nodes[i];
            let class_weight = if pass == Pass::Scored || node.hints.main {
                f32::from(node.hints.class_weight)
            } else {
                0.0
            };
            score[i] = tag_bonus(node.tag) + class_weight;
        }
    };
    for (block, verdict) in page.blocks.iter().zip(&verdicts) {
        let tag = nodes[block.node as usize].tag;
        let prose_item = tag == "li" && block.weight >= 100;
        if *verdict != Verdict::Kept
            || block.weight < MIN_PARAGRAPH
            || !(scored_tag(tag) || prose_item)
        {
            continue;
        }
        let worth = paragraph_score(block);
        let mut at = nodes[block.node as usize].parent;
        let mut level = 0;
        while let Some(i) = at {
            if i == 0 || level >= 5 {
                break;
            }
            init(&mut score, i as usize);
            let divider = match level {
                0 => 1.0,
                1 => 2.0,
                l => l as f32 * 3.0,
            };
            score[i as usize] += worth / divider;
            level += 1;
            at = nodes[i as usize].parent;
        }
    }
    let final_score: Vec<f32> = (0..n)
        .map(|i| {
            if score[i].is_nan() {
                f32::NAN
            } else {
                score[i] * (1.0 - link_density(weight[i], link_weight[i]))
            }
        })
        .collect();
    let Some(mut top) = (0..n)
        .filter(|&i| !final_score[i].is_nan())
        .max_by(|&a, &b| final_score[a].total_cmp(&final_score[b]))
    else {
        return finish(page, pass, None, verdicts, |_| false);
    };
    // Several candidates nearly as good as the best one, under one ancestor: the article is
    // split into parts (steps, sections) and that ancestor holds them all.
    let mut ranked: Vec<usize> = (0..n).filter(|&i| !final_score[i].is_nan()).collect();
    ranked.sort_by(|&a, &b| final_score[b].total_cmp(&final_score[a]));
    let close: Vec<usize> = ranked
        .iter()
        .skip(1)
        .take(4)
        .copied()
        .filter(|&i| final_score[i] >= final_score[top] * 0.75)
        .collect();
    if close.len() >= 2 {
        let is_under = |mut node: usize, ancestor: usize| loop {
            if node == ancestor {
                return true;
            }
            match nodes[node].parent {
                Some(p) => node = p as usize,
                None => return false,
            }
        };
        let mut at = nodes[top].parent;
        while let Some(a) = at {
            let a = a as usize;
            if a == 0 || matches!(nodes[a].tag, "body" | "html") {
                break;
            }
            if close.iter().filter(|&&c| is_under(c, a)).count() >= 2 {
                top = a;
                break;
            }
            at = nodes[a].parent;
        }
    }
    // Climb while an ancestor scores higher: the article is often split across siblings
    // whose common parent gathers their scores.
    let threshold = final_score[top] / 3.0;
    let mut last = final_score[top];
    let mut at = nodes[top].parent;
    while let Some(p) = at {
        let p = p as usize;
        if p == 0 || matches!(nodes[p].tag, "body" | "html") {
            break;
        }
        if !final_score[p].is_nan() {
            if final_score[p] < threshold {
                break;
            }
            if final_score[p] > last {
                top = p;
                break;
            }
            last = final_score[p];
        }
        at = nodes[p].parent;
    }
    // A candidate alone in its parent is as good as the parent, whose siblings may be the
    // other parts of the article.
    let mut children = vec![0u32; n];
    for node in nodes.iter() {
        if let Some(p) = node.parent {
            children[p as usize] += 1;
        }
    }
    while let Some(p) = nodes[top].parent {
        let p = p as usize;
        if p == 0 || children[p] != 1 || matches!(nodes[p].tag, "body" | "html") {
            break;
        }
        top = p;
    }
    // Siblings that score like the top candidate, or read like paragraphs, join it.
    let sibling_threshold = (final_score[top] * 0.2).max(10.0);
    let parent = nodes[top].parent;
    let mut chosen = vec![false; n];
    chosen[top] = true;
    if let Some(parent) = parent {
        for i in 0..n {
            if i == top || nodes[i].parent != Some(parent) || weight[i] == 0 {
                continue;
            }
            let density = link_density(weight[i], link_weight[i]);
            let scored = !final_score[i].is_nan() && final_score[i] >= sibling_threshold;
            let prose = (weight[i] > 80 && density < 0.25)
                || (nodes[i].tag == "p" && density == 0.0 && weight[i] > 30);
            chosen[i] = scored || prose;
        }
    }
    let in_chosen = |node: u32| {
        let mut at = Some(node);
        while let Some(i) = at {
            if chosen[i as usize] {
                return true;
            }
            at = nodes[i as usize].parent;
        }
        false
    };
    // Text directly in the parent, between the chosen siblings, joins when it reads as prose.
    let direct_prose = |block: &Block| {
        parent == Some(block.node)
            && block.weight > 80
            && link_density(block.weight, block.link_weight) < 0.25
    };
    for (block, verdict) in page.blocks.iter().zip(verdicts.iter_mut()) {
        if *verdict == Verdict::Kept && !in_chosen(block.node) && !direct_prose(block) {
            *verdict = Verdict::OutsideMainContent;
        }
    }
    drop_clutter(page, pass, &chosen, &mut verdicts);
    finish(page, pass, Some(top as u32), verdicts, |_| true)
}

/// Containers inside the main content that a reader skips: link lists, share bars, photo
/// credits, "Advertisement" slots. Judged from the inside out, each on what is left in it,
/// and never when they hold ten commas or more (prose).
fn drop_clutter(page: &Page<'_>, pass: Pass, chosen: &[bool], verdicts: &mut [Verdict]) {
    let nodes = &page.nodes;
    let n = nodes.len();
    let mut weight = vec![0u32; n];
    let mut link_weight = vec![0u32; n];
    let mut commas = vec![0u32; n];
    for (block, verdict) in page.blocks.iter().zip(verdicts.iter()) {
        if *verdict == Verdict::Kept {
            let i = block.node as usize;
            weight[i] += block.weight;
            link_weight[i] += block.link_weight;
            commas[i] += block.commas;
        }
    }
    let mut clutter = vec![false; n];
    for i in (1..n).rev() {
        let node = &nodes[i];
        let judged = !chosen[i]
            && matches!(
                node.tag,
                "div"
                    | "section"
                    | "ul"
                    | "ol"
                    | "table"
                    | "form"
                    | "fieldset"
                    | "header"
                    | "footer"
                    | "aside"
                    | "nav"
                    | "dl"
            );
        if judged && weight[i] > 0 && commas[i] < 10 {
            let class_weight = if pass == Pass::Scored {
                node.hints.class_weight
            } else {
                0
            };
            let density = link_density(weight[i], link_weight[i]);
            if class_weight < 0
                || weight[i] < 25
                || density > 0.5
                || (density > 0.2 && class_weight < 25)
            {
                clutter[i] = true;
                continue;
            }
        }
        if let Some(p) = node.parent {
            let p = p as usize;
            weight[p] += weight[i];
            link_weight[p] += link_weight[i];
            commas[p] += commas[i];
        }
    }
    for (block, verdict) in page.blocks.iter().zip(verdicts.iter_mut()) {
        if *verdict != Verdict::Kept {
            continue;
        }
        let mut at = Some(block.node);
        while let Some(i) = at {
            if clutter[i as usize] {
                *verdict = Verdict::Clutter(i);
                break;
            }
            if chosen[i as usize] {
                break;
            }
            at = nodes[i as usize].parent;
        }
    }
}

/// Drops link lists from what is still kept and totals the rest.
fn finish(
    page: &Page<'_>,
    pass: Pass,
    top: Option<u32>,
    mut verdicts: Vec<Verdict>,
    keep: impl Fn(&Block) -> bool,
) -> Selection {
    let mut kept_weight = 0;
    for (block, verdict) in page.blocks.iter().zip(verdicts.iter_mut()) {
        if *verdict != Verdict::Kept {
            continue;
        }
        if !keep(block) {
            *verdict = Verdict::OutsideMainContent;
            continue;
        }
        let density = link_density(block.weight, block.link_weight);
        // Headings and table cells of the chosen content stay even when they are links (a
        // table of titles is data); the last pass has no chosen content to trust.
        let exempt = pass != Pass::AllText
            && (block.heading || matches!(page.nodes[block.node as usize].tag, "td" | "th"));
        if density > MAX_LINK_DENSITY && !exempt {
            *verdict = Verdict::LinkText(density);
            continue;
        }
        kept_weight += block.weight;
    }
    Selection {
        pass,
        top,
        verdicts,
        kept_weight,
    }
}
