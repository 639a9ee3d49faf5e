//! The kinds of value an option takes. A kind reads the value of `key = value` and
//! checks it, with the literal's span and the key in every message, then writes it
//! as an expression of the generated code (`Duration::from_secs(30)`, `RateLimit::new(..)`).

use std::fmt::Display;
use std::str::FromStr;

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitBool, LitInt, LitStr};

/// Reads the value of `key = value`; the key is for the messages.
type Read<T> = Box<dyn Fn(&Expr, &str) -> syn::Result<T>>;

/// How the value of one option is read, checked and written out.
pub(crate) struct Kind<T> {
    read: Read<T>,
    /// The value as an expression of the generated code, given the runtime crate's path.
    expr: fn(&T, &TokenStream) -> TokenStream,
}

impl<T> Kind<T> {
    pub(crate) fn read(&self, value: &Expr, key: &str) -> syn::Result<T> {
        (self.read)(value, key)
    }

    pub(crate) fn expr(&self, value: &T, krate: &TokenStream) -> TokenStream {
        (self.expr)(value, krate)
    }
}

impl Kind<LitInt> {
    /// The same integer, at most `max`.
    pub(crate) fn at_most(self, max: u64) -> Self {
        let read = self.read;
        Kind {
            read: Box::new(move |value, key| {
                let int = read(value, key)?;
                if int.base10_parse::<u64>()? > max {
                    return Err(syn::Error::new(int.span(), format!("`{key}` must be at most {max}")));
                }
                Ok(int)
            }),
            expr: self.expr,
        }
    }
}

/// A non-empty string: `queue = "emails"`.
pub(crate) fn string() -> Kind<LitStr> {
    Kind { read: Box::new(non_empty_str), expr: |text, _| quote!(#text) }
}

/// An integer that fits in `T`. `example` ends the message "`key` takes ..".
pub(crate) fn int<T>(example: &'static str) -> Kind<LitInt>
where
    T: FromStr + 'static,
    T::Err: Display,
{
    Kind { read: Box::new(move |value, key| int_lit::<T>(value, key, example)), expr: |int, _| quote!(#int) }
}

/// Whole seconds, at least 1, written as a `Duration`. `example` is the number the
/// message shows: "`key` takes a number of seconds, like `key = 30`".
pub(crate) fn secs(example: u64) -> Kind<LitInt> {
    Kind {
        read: Box::new(move |value, key| {
            let secs = int_lit::<u64>(value, key, &format!("a number of seconds, like `{key} = {example}`"))?;
            if secs.base10_parse::<u64>()? == 0 {
                return Err(syn::Error::new(secs.span(), format!("`{key}` must be at least 1")));
            }
            Ok(secs)
        }),
        expr: |secs, _| quote!(::core::time::Duration::from_secs(#secs)),
    }
}

/// `true` or `false`.
pub(crate) fn flag() -> Kind<LitBool> {
    Kind {
        read: Box::new(|value, key| match lit(value) {
            Some(Lit::Bool(b)) => Ok(b.clone()),
            _ => Err(syn::Error::new(value.span(), format!("`{key}` takes `true` or `false`"))),
        }),
        expr: |b, _| quote!(#b),
    }
}

/// `"100/s"`, `"30/m"`, `"500/h"` → (count, seconds per period), checked here so the
/// `RateLimit::new` it is written as cannot fail.
pub(crate) fn rate() -> Kind<(u32, u64)> {
    Kind {
        read: Box::new(|value, key| {
            let text = non_empty_str(value, key)?;
            let bad = || {
                syn::Error::new(
                    text.span(),
                    format!("`{key}` is written N/s, N/m or N/h, with N above 0, like `{key} = \"100/s\"`"),
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
        }),
        expr: |(count, per), krate| quote!(#krate::RateLimit::new(#count, ::core::time::Duration::from_secs(#per))),
    }
}

/// A path, or a string holding one: `crate = my_app::task_core`.
pub(crate) fn path() -> Kind<syn::Path> {
    Kind {
        read: Box::new(|value, key| match value {
            Expr::Path(p) => Ok(p.path.clone()),
            _ => match lit(value) {
                Some(Lit::Str(s)) => s.parse(),
                _ => Err(syn::Error::new(
                    value.span(),
                    format!("`{key}` takes a path, like `{key} = my_app::task_core`"),
                )),
            },
        }),
        expr: |path, _| quote!(#path),
    }
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

fn int_lit<T>(value: &Expr, key: &str, example: &str) -> syn::Result<LitInt>
where
    T: FromStr,
    T::Err: Display,
{
    match lit(value) {
        Some(Lit::Int(i)) => {
            i.base10_parse::<T>().map_err(|e| syn::Error::new(i.span(), format!("`{key}` is out of range: {e}")))?;
            Ok(i.clone())
        }
        _ => Err(syn::Error::new(value.span(), format!("`{key}` takes {example}"))),
    }
}
