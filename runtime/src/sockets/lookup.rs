//! `wasi:sockets/ip-name-lookup` over the pod network: IP literals and `localhost` answered at
//! once, every other name by the node's [`Outside`](crate::network::Outside) hook.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::task::{Context, Poll, Waker};

use wasmtime::component::Resource;
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddress, Network};
use wasmtime_wasi_io::poll::{DynPollable, Pollable};

use super::bindings::wasi::sockets::ip_name_lookup::{self, HostResolveAddressStream};
use super::{PodSocketsView, resolve_error};
use crate::network::{BoxFuture, ResolveError};

/// A lookup in progress or done: the guest's `resolve-address-stream`.
pub struct Resolution(State);

enum State {
    Pending(BoxFuture<Result<Vec<IpAddr>, ResolveError>>),
    Done(Result<VecDeque<IpAddr>, ErrorCode>),
}

impl Resolution {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let State::Pending(lookup) = &mut self.0 else {
            return Poll::Ready(());
        };
        let Poll::Ready(result) = lookup.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        self.0 = State::Done(result.map(VecDeque::from).map_err(resolve_error));
        Poll::Ready(())
    }
}

#[async_trait::async_trait]
impl Pollable for Resolution {
    async fn ready(&mut self) {
        std::future::poll_fn(|cx| self.poll(cx)).await;
    }
}

impl ip_name_lookup::Host for PodSocketsView<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<Resolution>, SocketError> {
        self.table.get(&network)?;
        let pod = self.pod()?;
        if name.is_empty() || name.len() > 253 || name.contains(char::is_whitespace) {
            return Err(ErrorCode::InvalidArgument.into());
        }
        let lookup = Resolution(State::Pending(pod.resolve(&name)));
        Ok(self.table.push(lookup)?)
    }
}

impl HostResolveAddressStream for PodSocketsView<'_> {
    fn resolve_next_address(
        &mut self,
        this: Resource<Resolution>,
    ) -> Result<Option<IpAddress>, SocketError> {
        let lookup = self.table.get_mut(&this)?;
        if lookup
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
        {
            return Err(ErrorCode::WouldBlock.into());
        }
        match &mut lookup.0 {
            State::Done(Ok(addresses)) => Ok(addresses.pop_front().map(IpAddress::from)),
            State::Done(Err(code)) => Err((*code).into()),
            State::Pending(_) => Err(ErrorCode::WouldBlock.into()),
        }
    }

    fn subscribe(&mut self, this: Resource<Resolution>) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi_io::poll::subscribe(self.table, this)
    }

    fn drop(&mut self, this: Resource<Resolution>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
