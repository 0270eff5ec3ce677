//! Lists page by page (`limit` and `continue`), keeping only what the caller takes from each
//! item, so that a list of every object of a kind never holds more than one page of decoded
//! objects: the orphan reaper's lists of every CloudResource and creation record, the
//! `kubernetes` provider's list of its Pods.

use std::future::Future;

use kube::api::{ListParams, ObjectList};

/// Objects per page: kube-apiserver's own default page size for paginated clients.
pub const PAGE: u32 = 500;

/// Every item `fetch` lists with `params`, page by page, mapped through `keep` (items it
/// returns `None` for are dropped) before the next page is asked for.
pub async fn collect<I, T, Fut>(
    params: ListParams,
    mut fetch: impl FnMut(ListParams) -> Fut,
    mut keep: impl FnMut(I) -> Option<T>,
) -> Result<Vec<T>, kube::Error>
where
    I: Clone,
    Fut: Future<Output = Result<ObjectList<I>, kube::Error>>,
{
    let mut params = params.limit(PAGE);
    let mut out = Vec::new();
    loop {
        let page = fetch(params.clone()).await?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        out.extend(page.items.into_iter().filter_map(&mut keep));
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::ListMeta;

    fn page(items: Vec<u32>, next: Option<&str>) -> ObjectList<u32> {
        ObjectList {
            types: Default::default(),
            metadata: ListMeta {
                continue_: next.map(str::to_string),
                ..ListMeta::default()
            },
            items,
        }
    }

    #[tokio::test]
    async fn follows_continue_tokens_and_keeps_what_the_caller_takes() {
        let asked = std::sync::Mutex::new(vec![]);
        let got = collect(
            ListParams::default(),
            |p| {
                asked
                    .lock()
                    .unwrap()
                    .push((p.limit, p.continue_token.clone()));
                let answer = match p.continue_token.as_deref() {
                    None => page(vec![1, 2, 3], Some("t1")),
                    Some("t1") => page(vec![4, 5], Some("")),
                    Some(other) => panic!("unexpected token {other}"),
                };
                std::future::ready(Ok(answer))
            },
            |n| (n % 2 == 1).then_some(n * 10),
        )
        .await
        .unwrap();
        assert_eq!(got, [10, 30, 50]);
        assert_eq!(
            *asked.lock().unwrap(),
            [(Some(PAGE), None), (Some(PAGE), Some("t1".to_string()))]
        );
    }
}
