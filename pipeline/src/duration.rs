//! GitLab's durations (`timeout:`, `start_in:`, `expire_in:`), as ChronicDuration reads them:
//! `1h 30m`, `3 hours`, `2h20min`, `1 week and 2 days`, a bare number of seconds.

use std::time::Duration;

/// Parse a GitLab duration; `None` when it is not one.
pub(crate) fn parse(text: &str) -> Option<Duration> {
    let text = text.trim().to_lowercase();
    if text.is_empty() {
        return None;
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let cleaned = text.replace(" and ", " ").replace(',', " ");
    let chars: Vec<char> = cleaned.chars().collect();
    let mut index = 0;
    let mut total: f64 = 0.0;
    let mut any = false;
    while index < chars.len() {
        if chars[index].is_whitespace() {
            index += 1;
            continue;
        }
        let start = index;
        while index < chars.len() && (chars[index].is_ascii_digit() || chars[index] == '.') {
            index += 1;
        }
        if start == index {
            return None;
        }
        let number: f64 = chars[start..index]
            .iter()
            .collect::<String>()
            .parse()
            .ok()?;
        while index < chars.len() && chars[index].is_whitespace() {
            index += 1;
        }
        let unit_start = index;
        while index < chars.len() && chars[index].is_ascii_alphabetic() {
            index += 1;
        }
        let unit: String = chars[unit_start..index].iter().collect();
        let seconds = match unit.as_str() {
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "wk" | "wks" | "week" | "weeks" => 604_800.0,
            "mo" | "mos" | "month" | "months" => 2_592_000.0,
            "y" | "yr" | "yrs" | "year" | "years" => 31_536_000.0,
            _ => return None,
        };
        total += number * seconds;
        any = true;
    }
    any.then(|| Duration::from_secs_f64(total))
}
