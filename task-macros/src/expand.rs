//! Writes the code for one task. Given `#[task] pub async fn add(x: i64, y: i64) -> TaskResult<i64>`:
//!
//! 1. the function, unchanged (a direct call still runs it in place);
//! 2. beside it, hidden items that mention the user's types, so the user's paths
//!    resolve in the user's scope: `__celerity_add_args` (the serde struct),
//!    `__celerity_add_output`, `__celerity_add_signature`, `__celerity_add_delay`;
//! 3. `pub mod add { NAME, Args, Output, Task, delay, signature }` re-exporting them,
//!    with a visibility no wider than the function's;
//! 4. `const _: () = { .. }` with the argument bound checks (spanned on each type)
//!    and the registry submission.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, Visibility};

use crate::attr::TaskArgs;
use crate::fallback;
use crate::input::{self, ItemFn, Model, Return};

/// The whole macro: parse, check, expand, or fall back.
pub(crate) fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: ItemFn = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(e) => return fallback::unparsed(item, &e),
    };
    let (options, attr_error) = TaskArgs::parse(args);
    match input::check(&item.sig) {
        // A bad option does not stop the expansion: callers of `add::delay` keep
        // compiling, and the only error is the option's.
        Ok(model) => {
            let mut out = expand(&item, &model, &options);
            if let Some(e) = attr_error {
                out.extend(e.to_compile_error());
            }
            out
        }
        Err(mut e) => {
            if let Some(attr) = attr_error {
                e.combine(attr);
            }
            fallback::signature_error(&item, &e)
        }
    }
}

/// The visibility of items inside `mod add`, as seen from the function's scope.
pub(crate) fn inner_vis(vis: &Visibility) -> TokenStream {
    match vis {
        Visibility::Inherited => quote!(pub(super)),
        Visibility::Public(_) => quote!(pub),
        Visibility::Restricted(r) => {
            let path = &r.path;
            let first = path.segments.first().map(|s| s.ident.to_string()).unwrap_or_default();
            match first.as_str() {
                "crate" if path.leading_colon.is_none() => quote!(#vis),
                "self" if path.segments.len() == 1 => quote!(pub(super)),
                _ => quote!(pub(in super::#path)),
            }
        }
    }
}

pub(crate) fn krate(options: &TaskArgs) -> TokenStream {
    options.krate.as_ref().map_or_else(|| quote!(::task_core), ToTokens::to_token_stream)
}

pub(crate) fn hidden(ident: &Ident, what: &str) -> Ident {
    format_ident!("__celerity_{}_{}", ident, what)
}

/// `name::partial(rest..)` for a task with at least one argument: the call without its
/// first argument, which a chain step's predecessor or a chord's members provide.
fn partial(ident: &Ident, vis: &Visibility, model: &Model, krate: &TokenStream, output_ty: &Ident) -> TokenStream {
    let Some(((first, first_ty), rest)) = model.params.split_first() else { return TokenStream::new() };
    let partial_fn = hidden(ident, "partial");
    let rest_ty = hidden(ident, "partial_args");
    let names: Vec<&Ident> = rest.iter().map(|(name, _)| name).collect();
    let types: Vec<&syn::Type> = rest.iter().map(|(_, ty)| ty).collect();
    let key = first.unraw().to_string();
    let serde_crate = format!("{}::__private::serde", krate.to_string().replace(' ', ""));
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, missing_docs, unreachable_pub, clippy::all)]
        #[derive(#krate::__private::serde::Serialize)]
        #[serde(crate = #serde_crate)]
        #vis struct #rest_ty { #( pub #names: #types, )* }

        #[doc(hidden)]
        #[allow(unreachable_pub, clippy::too_many_arguments, clippy::needless_pass_by_value)]
        #vis fn #partial_fn(#(#names: #types),*) -> #krate::Partial<#first_ty, #output_ty> {
            #krate::Partial::new(#ident::NAME, #key, &#rest_ty { #(#names),* }, <#ident::Task as #krate::Task>::OPTIONS)
        }
    }
}

fn expand(item: &ItemFn, model: &Model, options: &TaskArgs) -> TokenStream {
    let ItemFn { attrs, vis, sig, body } = item;
    let krate = krate(options);
    let ident = &model.ident;
    let inner = inner_vis(vis);
    let args_ty = hidden(ident, "args");
    let output_ty = hidden(ident, "output");
    let signature_fn = hidden(ident, "signature");
    let delay_fn = hidden(ident, "delay");
    let partial_fn = model.params.first().map(|_| hidden(ident, "partial"));
    let partial_fn = partial_fn.iter();
    let placement = format_ident!("__celerity_task_{}_must_be_declared_at_module_level_not_inside_a_function", ident);

    let names: Vec<&Ident> = model.params.iter().map(|(name, _)| name).collect();
    // As serde names the fields: `r#type` is `type`.
    let param_names: Vec<String> = names.iter().map(|n| syn::ext::IdentExt::unraw(*n).to_string()).collect();
    let types: Vec<&syn::Type> = model.params.iter().map(|(_, ty)| ty).collect();
    let partial = partial(ident, vis, model, &krate, &output_ty);
    let (output, call_result) = match &model.ret {
        Return::Fallible(ty) => (quote!(<#ty as #krate::__private::TaskReturn>::Output), quote!(__celerity_returned)),
        Return::Plain(ty) => {
            (quote!(#ty), quote!(::core::result::Result::<#ty, #krate::TaskError>::Ok(__celerity_returned)))
        }
    };
    let output_span = match &sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => ident.span(),
    };

    let serde_crate = format!("{}::__private::serde", krate.to_string().replace(' ', ""));
    let name = match &options.name {
        Some(name) => quote!(#name),
        None => quote!(::core::module_path!()),
    };
    let task_options = options.task_options(&krate);

    // Locals of generated code use mixed-site hygiene so no parameter name can clash.
    let app = Ident::new("app", Span::mixed_site());
    let ctx = Ident::new("ctx", Span::mixed_site());
    let bytes = Ident::new("bytes", Span::mixed_site());
    let ctx_arg = model.has_ctx.then(|| quote!(#ctx,));
    let call =
        if model.is_async { quote!(#ident(#ctx_arg #(#names),*).await) } else { quote!(#ident(#ctx_arg #(#names),*)) };
    let invocation = if model.is_async {
        quote!(#krate::__private::Invocation::Async(::std::boxed::Box::pin(async move {
            let __celerity_returned = #call;
            #krate::__private::finish(#call_result)
        })))
    } else {
        quote!(#krate::__private::Invocation::Blocking(::std::boxed::Box::new(move || {
            let __celerity_returned = #call;
            #krate::__private::finish(#call_result)
        })))
    };
    let ctx_unused = (!model.has_ctx).then(|| quote!(let _ = #ctx;));
    let blocking = !model.is_async;
    let arg_checks = types.iter().map(|ty| quote_spanned!(ty.span()=> #krate::__private::assert_arg::<#ty>();));
    let output_check = quote_spanned!(output_span=> #krate::__private::assert_output::<#output_ty>(););
    let line = quote_spanned!(ident.span()=> ::core::line!());
    let doc =
        format!("The Celerity task [`{ident}()`]({ident}()): `delay`, `signature`, its `NAME`, `Args` and `Output`.");

    quote! {
        // Task arguments are owned by design (they come out of a message), so
        // clippy's pass-by-value hint does not apply to a task function.
        #(#attrs)*
        #[allow(clippy::needless_pass_by_value)]
        #vis #sig #body

        #[doc(hidden)]
        #[allow(non_camel_case_types, missing_docs, unreachable_pub, clippy::all)]
        #[derive(#krate::__private::serde::Serialize, #krate::__private::serde::Deserialize)]
        #[serde(crate = #serde_crate)]
        #vis struct #args_ty { #( pub #names: #types, )* }

        #[doc(hidden)]
        #[allow(non_camel_case_types, unreachable_pub)]
        #vis type #output_ty = #output;

        #[doc(hidden)]
        #[allow(non_upper_case_globals, dead_code)]
        const #placement: () = ();

        #[doc(hidden)]
        #[allow(unreachable_pub, clippy::too_many_arguments, clippy::needless_pass_by_value)]
        #vis fn #signature_fn(#(#names: #types),*) -> #krate::Signature<#output_ty> {
            #krate::Signature::new(#ident::NAME, &#args_ty { #(#names),* }, <#ident::Task as #krate::Task>::OPTIONS)
        }

        #partial

        #[doc(hidden)]
        #[allow(unreachable_pub, clippy::too_many_arguments)]
        #vis async fn #delay_fn(#app: &#krate::App, #(#names: #types),*)
            -> ::core::result::Result<#krate::AsyncResult<#output_ty>, #krate::Error>
        {
            #signature_fn(#(#names),*).apply_async(#app).await
        }

        #[doc = #doc]
        #[allow(non_snake_case, unreachable_pub)]
        #vis mod #ident {
            // In a function body `super` is not the function's scope: say so first.
            use super::#placement as _;
            /// The registered task name.
            #inner const NAME: &str = #name;
            /// The arguments: one field per parameter.
            #inner type Args = super::#args_ty;
            /// What the task returns on success.
            #inner type Output = super::#output_ty;
            /// The task as a type, for `App::send::<Task>(Args { .. })`.
            #[derive(Debug, Clone, Copy)]
            #inner struct Task;
            impl #krate::Task for Task {
                const NAME: &'static str = NAME;
                const OPTIONS: #krate::TaskOptions = #task_options;
                type Args = Args;
                type Output = Output;
            }
            /// Sends the task now: `delay(&app, args..)`.
            #inner use super::#delay_fn as delay;
            /// The call with options (`countdown`, `queue`, `priority`, …), not yet sent.
            #inner use super::#signature_fn as signature;
            #(#[doc = "The call without its first argument, which a chain or chord provides: `partial(other args..)`."] #inner use super::#partial_fn as partial;)*
        }

        const _: () = {
            #(#arg_checks)*
            #output_check

            #[allow(clippy::needless_pass_by_value)]
            fn __celerity_call(#ctx: #krate::TaskContext, #bytes: &[u8])
                -> ::core::result::Result<#krate::__private::Invocation, #krate::CodecError>
            {
                #ctx_unused
                let #args_ty { #(#names),* } = #krate::__private::decode_args(#ident::NAME, #bytes)?;
                ::core::result::Result::Ok(#invocation)
            }

            #krate::__private::submit_task! {
                #krate::__private::TaskEntry::__new(
                    #ident::NAME,
                    <#ident::Task as #krate::Task>::OPTIONS,
                    #blocking,
                    __celerity_call,
                    ::core::module_path!(),
                    ::core::file!(),
                    #line,
                )
                .__with_params(&[#(#param_names),*])
            }
        };
    }
}
