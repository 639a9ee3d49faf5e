//! `#[task(name = "..", queue = "..", max_retries = N, time_limit = N, crate = path)]`.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitInt, LitStr, Meta, Token};

/// The options given to `#[task(..)]`.
#[derive(Default)]
pub(crate) struct TaskArgs {
    pub(crate) name: Option<LitStr>,
    pub(crate) queue: Option<LitStr>,
    pub(crate) max_retries: Option<LitInt>,
    pub(crate) time_limit: Option<LitInt>,
    pub(crate) result_ttl: Option<LitInt>,
    pub(crate) krate: Option<syn::Path>,
}

const KNOWN: &str = "name, queue, max_retries, time_limit, result_ttl, crate";

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
        (args, errors.0)
    }
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
                "unknown option `retries`; options are: name, queue, max_retries, time_limit, result_ttl, crate",
                "`max_retries` takes a number of retries, like `max_retries = 5`",
                "`time_limit` must be at least 1",
                "`name` cannot be empty",
            ]
        );
    }

    #[test]
    fn out_of_range() {
        let errs = errors(quote!(max_retries = 99999999999));
        assert!(errs[0].starts_with("`max_retries` is out of range"), "{errs:?}");
    }
}
