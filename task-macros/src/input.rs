//! Reads and checks the task function's signature. The body is kept as opaque tokens
//! (tracing's `MaybeItemFn` habit): never re-parsed, never respanned.

use proc_macro2::{Ident, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Pat, ReturnType, Signature, Type, Visibility};

use crate::attr::Errors;

/// The function as written.
pub(crate) struct ItemFn {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    pub(crate) body: TokenStream,
}

impl Parse for ItemFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input
            .parse()
            .map_err(|e| syn::Error::new(e.span(), "#[task] goes on a module-level `fn` or `async fn`"))?;
        let body: TokenStream = input.parse()?;
        Ok(Self { attrs, vis, sig, body })
    }
}

/// What the task returns.
pub(crate) enum Return {
    /// `TaskResult<T>` or `Result<T, E>`: its type.
    Fallible(Type),
    /// Any other type (or none: `()`), wrapped in `Ok`.
    Plain(Type),
}

/// A checked task signature.
pub(crate) struct Model {
    pub(crate) ident: Ident,
    pub(crate) is_async: bool,
    /// True when the first parameter is `ctx: TaskContext`.
    pub(crate) has_ctx: bool,
    /// The queued parameters: name and type.
    pub(crate) params: Vec<(Ident, Type)>,
    pub(crate) ret: Return,
}

/// The last path segment of a type, to recognise `TaskContext` and `Result`. This is
/// a name heuristic (axum finds `State` the same way): a renamed import of
/// `TaskContext` is not recognised and fails the argument bound instead.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        Type::Group(g) => last_segment(&g.elem),
        Type::Paren(p) => last_segment(&p.elem),
        _ => None,
    }
}

fn is_ctx(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "TaskContext")
}

/// Checks every rule, collecting every error.
pub(crate) fn check(sig: &Signature) -> Result<Model, syn::Error> {
    let mut errors = Errors::default();
    let mut fail = |span: proc_macro2::Span, msg: &str| errors.push(syn::Error::new(span, msg));

    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        fail(
            sig.generics.span(),
            "a task cannot be generic: a worker must know the exact argument and result types; remove the type and lifetime parameters",
        );
    }
    if let Some(c) = &sig.constness {
        fail(c.span(), "a task cannot be a `const fn`");
    }
    if let Some(u) = &sig.unsafety {
        fail(u.span(), "a task cannot be `unsafe`: a worker calls it with data from the queue");
    }
    if let Some(abi) = &sig.abi {
        fail(abi.span(), "a task cannot have an `extern` ABI");
    }
    if let Some(v) = &sig.variadic {
        fail(v.span(), "a task cannot be variadic");
    }

    let mut has_ctx = false;
    let mut params = Vec::new();
    for (index, arg) in sig.inputs.iter().enumerate() {
        let typed = match arg {
            FnArg::Receiver(r) => {
                fail(r.span(), "a task cannot take `self`: make it a free function at module level");
                continue;
            }
            FnArg::Typed(t) => t,
        };
        if is_ctx(&typed.ty) {
            if index == 0 {
                has_ctx = true;
            } else {
                fail(typed.ty.span(), "`TaskContext` must be the first parameter of a task");
            }
            continue;
        }
        let ident = match &*typed.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
            other => {
                fail(
                    other.span(),
                    "task parameters must be plain names (`x: T`), not patterns: each name is the key of the argument in the message",
                );
                continue;
            }
        };
        match &*typed.ty {
            Type::Reference(r) => fail(
                r.span(),
                "task arguments travel through the queue, so they must be owned: use `String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`",
            ),
            Type::ImplTrait(t) => fail(t.span(), "a task argument cannot be `impl Trait`: name a concrete type"),
            _ => params.push((ident, (*typed.ty).clone())),
        }
    }

    let ret = match &sig.output {
        ReturnType::Default => Return::Plain(syn::parse_quote!(())),
        ReturnType::Type(_, ty) => match &**ty {
            Type::ImplTrait(t) => {
                fail(t.span(), "a task cannot return `impl Trait`: write an `async fn` instead of returning a future");
                Return::Plain(syn::parse_quote!(()))
            }
            ty if last_segment(ty).is_some_and(|s| s.ident == "TaskResult" || s.ident == "Result") => {
                Return::Fallible(ty.clone())
            }
            ty => Return::Plain(ty.clone()),
        },
    };

    match errors.0 {
        Some(e) => Err(e),
        None => Ok(Model { ident: sig.ident.clone(), is_async: sig.asyncness.is_some(), has_ctx, params, ret }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn sig(tokens: TokenStream) -> Signature {
        syn::parse2::<ItemFn>(tokens).unwrap().sig
    }

    fn messages(tokens: TokenStream) -> Vec<String> {
        match check(&sig(tokens)) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn accepts_ctx_first_and_named_params() {
        let model = check(&sig(quote!(
            async fn f(ctx: task_core::TaskContext, mut x: i64, y: String) -> TaskResult<i64> {}
        )))
        .unwrap();
        assert!(model.has_ctx && model.is_async);
        assert_eq!(model.params.iter().map(|(i, _)| i.to_string()).collect::<Vec<_>>(), ["x", "y"]);
        assert!(matches!(model.ret, Return::Fallible(_)));
    }

    #[test]
    fn plain_and_unit_returns() {
        assert!(matches!(
            check(&sig(quote!(
                fn f() {}
            )))
            .unwrap()
            .ret,
            Return::Plain(_)
        ));
        assert!(matches!(
            check(&sig(quote!(
                fn f() -> u8 {
                    1
                }
            )))
            .unwrap()
            .ret,
            Return::Plain(_)
        ));
    }

    #[test]
    fn collects_every_error() {
        let errs = messages(quote!(
            fn f<T>(&self, (a, b): (u8, u8), s: &str, c: TaskContext) {}
        ));
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(errs[0].contains("cannot be generic"));
        assert!(errs[1].contains("`self`"));
        assert!(errs[2].contains("plain names"));
        assert!(errs[3].contains("must be owned"));
        assert!(errs[4].contains("first parameter"));
    }
}
