//! `#[task(name = "..", queue = "..", max_retries = N, time_limit = N, crate = path)]`.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitBool, LitInt, LitStr, Meta, Token};

/// The options given to `#[task(..)]`.
#[derive(Default)]
pub(crate) struct TaskArgs {
    pub(crate) name: Option<LitStr>,
    pub(crate) queue: Option<LitStr>,
    pub(crate) max_retries: Option<LitInt>,
    pub(crate) time_limit: Option<LitInt>,
    pub(crate) result_ttl: Option<LitInt>,
    pub(crate) priority: Option<LitInt>,
    pub(crate) soft_time_limit: Option<LitInt>,
    pub(crate) expires: Option<LitInt>,
    /// The rate: (count, seconds per period), checked at compile time.
    pub(crate) rate_limit: Option<(u32, u64)>,
    pub(crate) unique_for: Option<LitInt>,
    pub(crate) ignore_result: Option<LitBool>,
    pub(crate) acks_early: Option<LitBool>,
    pub(crate) track_started: Option<LitBool>,
    pub(crate) retry_backoff: Option<LitInt>,
    pub(crate) retry_backoff_max: Option<LitInt>,
    pub(crate) retry_jitter: Option<LitBool>,
    pub(crate) krate: Option<syn::Path>,
}

const KNOWN: &str = "name, queue, priority, max_retries, retry_backoff, retry_backoff_max, retry_jitter, time_limit, soft_time_limit, expires, rate_limit, unique_for, ignore_result, acks_early, track_started, result_ttl, crate";

impl TaskArgs {
    /// Parses every option, collecting every error (one per mistake).
    pub(crate) fn parse(tokens: TokenStream) -> (Self, Option<syn::Error>) {
        let mut args = TaskArgs::default();
        let mut errors = Errors::default();
        let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens) {
            Ok(metas) => metas,
            Err(e) => return (args, Some(e)),
        };
        for meta in metas {
            let Meta::NameValue(nv) = &meta else {
                errors.push(syn::Error::new(meta.span(), format!("expected `option = value`; options are: {KNOWN}")));
                continue;
            };
            let key = nv.path.get_ident().map(ToString::to_string).unwrap_or_default();
            let result = match key.as_str() {
                "name" => non_empty_str(&nv.value, "name").and_then(|v| set(&mut args.name, v, &nv.path)),
                "queue" => non_empty_str(&nv.value, "queue").and_then(|v| set(&mut args.queue, v, &nv.path)),
                "max_retries" => int::<u32>(&nv.value, "max_retries", "a number of retries, like `max_retries = 5`")
                    .and_then(|v| set(&mut args.max_retries, v, &nv.path)),
                "time_limit" => int::<u64>(&nv.value, "time_limit", "a number of seconds, like `time_limit = 30`")
                    .and_then(|v| positive(v, "time_limit"))
                    .and_then(|v| set(&mut args.time_limit, v, &nv.path)),
                "result_ttl" => int::<u64>(&nv.value, "result_ttl", "a number of seconds, like `result_ttl = 3600`")
                    .and_then(|v| positive(v, "result_ttl"))
                    .and_then(|v| set(&mut args.result_ttl, v, &nv.path)),
                "priority" => int::<u8>(&nv.value, "priority", "a priority from 0 to 9, like `priority = 7`")
                    .and_then(|v| at_most(v, 9, "priority"))
                    .and_then(|v| set(&mut args.priority, v, &nv.path)),
                "soft_time_limit" => {
                    secs(&nv.value, "soft_time_limit").and_then(|v| set(&mut args.soft_time_limit, v, &nv.path))
                }
                "expires" => secs(&nv.value, "expires").and_then(|v| set(&mut args.expires, v, &nv.path)),
                "unique_for" => secs(&nv.value, "unique_for").and_then(|v| set(&mut args.unique_for, v, &nv.path)),
                "retry_backoff" => {
                    secs(&nv.value, "retry_backoff").and_then(|v| set(&mut args.retry_backoff, v, &nv.path))
                }
                "retry_backoff_max" => {
                    secs(&nv.value, "retry_backoff_max").and_then(|v| set(&mut args.retry_backoff_max, v, &nv.path))
                }
                "rate_limit" => rate(&nv.value).and_then(|v| set(&mut args.rate_limit, v, &nv.path)),
                "ignore_result" => {
                    boolean(&nv.value, "ignore_result").and_then(|v| set(&mut args.ignore_result, v, &nv.path))
                }
                "acks_early" => boolean(&nv.value, "acks_early").and_then(|v| set(&mut args.acks_early, v, &nv.path)),
                "track_started" => {
                    boolean(&nv.value, "track_started").and_then(|v| set(&mut args.track_started, v, &nv.path))
                }
                "retry_jitter" => {
                    boolean(&nv.value, "retry_jitter").and_then(|v| set(&mut args.retry_jitter, v, &nv.path))
                }
                "crate" => crate_path(&nv.value).and_then(|v| set(&mut args.krate, v, &nv.path)),
                _ => Err(syn::Error::new(
                    nv.path.span(),
                    format!(
                        "unknown option `{}`; options are: {KNOWN}",
                        quote::ToTokens::to_token_stream(&nv.path).to_string().replace(' ', "")
                    ),
                )),
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        if let (Some(soft), Some(hard)) = (&args.soft_time_limit, &args.time_limit)
            && soft.base10_parse::<u64>().ok() >= hard.base10_parse::<u64>().ok()
        {
            errors.push(syn::Error::new(soft.span(), "`soft_time_limit` must be below `time_limit`"));
        }
        if let (Some(base), Some(max)) = (&args.retry_backoff, &args.retry_backoff_max)
            && base.base10_parse::<u64>().ok() > max.base10_parse::<u64>().ok()
        {
            errors.push(syn::Error::new(max.span(), "`retry_backoff_max` must be at least `retry_backoff`"));
        }
        (args, errors.0)
    }
}

fn secs(value: &Expr, key: &str) -> syn::Result<LitInt> {
    int::<u64>(value, key, &format!("a number of seconds, like `{key} = 30`")).and_then(|v| positive(v, key))
}

fn at_most(value: LitInt, max: u64, key: &str) -> syn::Result<LitInt> {
    if value.base10_parse::<u64>()? > max {
        return Err(syn::Error::new(value.span(), format!("`{key}` must be at most {max}")));
    }
    Ok(value)
}

fn boolean(value: &Expr, key: &str) -> syn::Result<LitBool> {
    match lit(value) {
        Some(Lit::Bool(b)) => Ok(b.clone()),
        _ => Err(syn::Error::new(value.span(), format!("`{key}` takes `true` or `false`"))),
    }
}

/// `"100/s"`, `"30/m"`, `"500/h"` → (count, seconds per period).
fn rate(value: &Expr) -> syn::Result<(u32, u64)> {
    let text = non_empty_str(value, "rate_limit")?;
    let bad = || {
        syn::Error::new(
            text.span(),
            "`rate_limit` is written N/s, N/m or N/h, with N above 0, like `rate_limit = \"100/s\"`",
        )
    };
    let raw = text.value();
    let (count, unit) = raw.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(bad());
    }
    Ok((count, per))
}

/// Collects errors (serde's `Ctxt` habit).
#[derive(Default)]
pub(crate) struct Errors(pub(crate) Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }
}

fn set<T>(slot: &mut Option<T>, value: T, path: &syn::Path) -> syn::Result<()> {
    if slot.is_some() {
        let key = path.get_ident().map(ToString::to_string).unwrap_or_default();
        return Err(syn::Error::new(path.span(), format!("`{key}` specified more than once")));
    }
    *slot = Some(value);
    Ok(())
}

fn lit(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(g) => lit(&g.expr),
        _ => None,
    }
}

fn non_empty_str(value: &Expr, key: &str) -> syn::Result<LitStr> {
    match lit(value) {
        Some(Lit::Str(s)) if s.value().trim().is_empty() => {
            Err(syn::Error::new(s.span(), format!("`{key}` cannot be empty")))
        }
        Some(Lit::Str(s)) => Ok(s.clone()),
        _ => Err(syn::Error::new(value.span(), format!("`{key}` takes a string, like `{key} = \"emails\"`"))),
    }
}

fn int<T: std::str::FromStr>(value: &Expr, key: &str, example: &str) -> syn::Result<LitInt>
where
    T::Err: std::fmt::Display,
{
    match lit(value) {
        Some(Lit::Int(i)) => {
            i.base10_parse::<T>().map_err(|e| syn::Error::new(i.span(), format!("`{key}` is out of range: {e}")))?;
            Ok(i.clone())
        }
        _ => Err(syn::Error::new(value.span(), format!("`{key}` takes {example}"))),
    }
}

fn positive(value: LitInt, key: &str) -> syn::Result<LitInt> {
    if value.base10_parse::<u64>()? == 0 {
        return Err(syn::Error::new(value.span(), format!("`{key}` must be at least 1")));
    }
    Ok(value)
}

fn crate_path(value: &Expr) -> syn::Result<syn::Path> {
    match value {
        Expr::Path(p) => Ok(p.path.clone()),
        _ => match lit(value) {
            Some(Lit::Str(s)) => s.parse(),
            _ => Err(syn::Error::new(value.span(), "`crate` takes a path, like `crate = my_app::task_core`")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn errors(tokens: TokenStream) -> Vec<String> {
        TaskArgs::parse(tokens).1.map(|e| e.into_iter().map(|e| e.to_string()).collect()).unwrap_or_default()
    }

    #[test]
    fn all_options() {
        let (args, err) = TaskArgs::parse(quote!(
            name = "a.b",
            queue = "q",
            max_retries = 5,
            time_limit = 30,
            crate = ::x::task_core
        ));
        assert!(err.is_none());
        assert_eq!(args.name.unwrap().value(), "a.b");
        assert_eq!(args.max_retries.unwrap().base10_parse::<u32>().unwrap(), 5);
        assert!(args.krate.is_some());
    }

    #[test]
    fn every_mistake_is_reported_once() {
        let errs = errors(quote!(queue = "a", queue = "b", retries = 3, max_retries = "5", time_limit = 0, name = ""));
        assert_eq!(
            errs,
            [
                "`queue` specified more than once",
                "unknown option `retries`; options are: name, queue, priority, max_retries, retry_backoff, retry_backoff_max, retry_jitter, time_limit, soft_time_limit, expires, rate_limit, unique_for, ignore_result, acks_early, track_started, result_ttl, crate",
                "`max_retries` takes a number of retries, like `max_retries = 5`",
                "`time_limit` must be at least 1",
                "`name` cannot be empty",
            ]
        );
    }

    #[test]
    fn control_options_are_checked() {
        let (args, err) = TaskArgs::parse(quote!(
            rate_limit = "20/s",
            priority = 9,
            soft_time_limit = 5,
            time_limit = 10,
            ignore_result = true
        ));
        assert!(err.is_none());
        assert_eq!(args.rate_limit, Some((20, 1)));
        let errs = errors(quote!(
            rate_limit = "20/fortnight",
            priority = 10,
            acks_early = 1,
            soft_time_limit = 10,
            time_limit = 10
        ));
        assert_eq!(
            errs,
            [
                "`rate_limit` is written N/s, N/m or N/h, with N above 0, like `rate_limit = \"100/s\"`",
                "`priority` must be at most 9",
                "`acks_early` takes `true` or `false`",
                "`soft_time_limit` must be below `time_limit`",
            ]
        );
    }

    #[test]
    fn out_of_range() {
        let errs = errors(quote!(max_retries = 99999999999));
        assert!(errs[0].starts_with("`max_retries` is out of range"), "{errs:?}");
    }
}
