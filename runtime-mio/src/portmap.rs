//! Port mapping at the router with UPnP IGD (the `igd-next` crate), on a thread of its own: a
//! gateway search and each request to the router block for up to seconds, and the event loop must
//! not. One file for both runtimes (runtime-smol includes it by path).
//!
//! The node decides when to map, renew and remove (`p2p_chat_core::nat::mapping`); this worker
//! only carries out each `MapRequest`, in order, and hands every `Map`'s answer to `report`, which
//! feeds it back to the node as `Input::PortMapped`.
//!
//! The search (SSDP, a multicast on the local link) is made only from a private IPv4 address
//! (RFC 1918): a host with any other address is not on a home network behind a router that maps
//! ports, and its link is not one to send searches on.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use igd_next::{AddAnyPortError, AddPortError, Gateway, PortMappingProtocol, SearchOptions};
use p2p_chat_core::nat::mapping::{MapFailure, MapRequest, Mapped};

/// How long the gateway search waits for a router to answer. Short: most networks have none,
/// and a router that maps ports answers on the local link within milliseconds.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long dropping the mapper waits for what is queued (the removal of a mapping, as the node
/// leaves) to reach the router.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How the mapping is named in the router's list.
const DESCRIPTION: &str = "p2p-chat";
/// Where UPnP searches go (SSDP).
const SSDP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 1900);

/// The worker thread (see the module docs). Dropping it lets the worker finish what is queued,
/// waiting at most [`STOP_GRACE`].
pub struct PortMapper {
    jobs: Option<Sender<MapRequest>>,
    done: Receiver<()>,
    /// A removal was queued: worth waiting for at the end. Nothing else is (a search under way
    /// would hold the program's exit for seconds).
    unmapping: bool,
}

/// Where a `Map`'s answer goes.
pub type Report = Box<dyn FnMut(Result<Mapped, MapFailure>) + Send>;

impl PortMapper {
    pub fn start(report: Report) -> io::Result<PortMapper> {
        let (jobs, queue) = mpsc::channel();
        let (finished, done) = mpsc::channel();
        std::thread::Builder::new().name("p2p-chat-portmap".into()).spawn(move || {
            work(queue, report);
            let _ = finished.send(());
        })?;
        Ok(PortMapper { jobs: Some(jobs), done, unmapping: false })
    }

    pub fn request(&mut self, req: MapRequest) {
        self.unmapping |= matches!(req, MapRequest::Unmap { .. });
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(req);
        }
    }

    /// Hands `req` to the worker held in `slot`, starting it with `report()` at the first
    /// request. Returns the answer the core must be given at once when there is no worker to
    /// answer (a `Map` while no thread can start).
    pub fn hand_over(
        slot: &mut Option<PortMapper>,
        req: MapRequest,
        report: impl FnOnce() -> Report,
    ) -> Option<Result<Mapped, MapFailure>> {
        if slot.is_none() {
            match PortMapper::start(report()) {
                Ok(m) => *slot = Some(m),
                Err(e) => {
                    let answer = Err(MapFailure::Refused(format!("cannot start a thread: {e}")));
                    return matches!(req, MapRequest::Map { .. }).then_some(answer);
                }
            }
        }
        if let Some(m) = slot {
            m.request(req);
        }
        None
    }
}

impl Drop for PortMapper {
    fn drop(&mut self) {
        // Closing the queue ends the worker once it has done what is in it.
        self.jobs = None;
        if self.unmapping {
            let _ = self.done.recv_timeout(STOP_GRACE);
        }
    }
}

fn work(queue: Receiver<MapRequest>, mut report: Report) {
    // Found once and kept: a search costs up to `SEARCH_TIMEOUT`. Forgotten when a request to it
    // fails, since a router that restarted may listen elsewhere.
    let mut gateway: Option<Gateway> = None;
    while let Ok(req) = queue.recv() {
        match req {
            MapRequest::Map { internal, external, lease } => {
                let answer = map(&mut gateway, internal, external, lease);
                match &answer {
                    Ok(m) => tracing::debug!("port mapping: {} forwarded to port {internal}", m.external),
                    Err(e) => tracing::debug!("port mapping: {e}"),
                }
                report(answer);
            }
            MapRequest::Unmap { external } => {
                let Some(g) = &gateway else { continue };
                match g.remove_port(PortMappingProtocol::TCP, external) {
                    Ok(()) => tracing::debug!("port mapping: port {external} removed"),
                    Err(e) => tracing::debug!("port mapping: removing port {external}: {e}"),
                }
            }
        }
    }
}

fn map(gateway: &mut Option<Gateway>, internal: u16, external: u16, lease: Duration) -> Result<Mapped, MapFailure> {
    let g = match gateway.take() {
        Some(g) => g,
        None => {
            let ours = local_ip_towards(SSDP.into()).map_err(|e| MapFailure::NoGateway(e.to_string()))?;
            if !matches!(ours, IpAddr::V4(v4) if v4.is_private()) {
                return Err(MapFailure::NoGateway(format!("{ours} is not a home network's address: no search")));
            }
            let mut options = SearchOptions::default();
            options.timeout = Some(SEARCH_TIMEOUT);
            options.single_search_timeout = Some(SEARCH_TIMEOUT);
            igd_next::search_gateway(options).map_err(|e| MapFailure::NoGateway(e.to_string()))?
        }
    };
    let refused = |e: &dyn std::fmt::Display| MapFailure::Refused(e.to_string());
    let local = SocketAddr::new(local_ip_towards(g.addr).map_err(|e| refused(&e))?, internal);
    let secs = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX);
    let (port, lease) = match g.add_port(PortMappingProtocol::TCP, external, local, secs, DESCRIPTION) {
        Ok(()) => (external, lease),
        // Another host holds the port: any the router picks will do, peers are told which.
        Err(AddPortError::PortInUse) => match g.add_any_port(PortMappingProtocol::TCP, local, secs, DESCRIPTION) {
            Ok(p) => (p, lease),
            Err(AddAnyPortError::RequestError(e)) => return Err(refused(&e)),
            Err(e) => {
                *gateway = Some(g);
                return Err(refused(&e));
            }
        },
        // Some routers grant only mappings for ever (the node still removes it on leaving).
        Err(AddPortError::OnlyPermanentLeasesSupported) => {
            g.add_port(PortMappingProtocol::TCP, external, local, 0, DESCRIPTION).map_err(|e| refused(&e))?;
            (external, Duration::ZERO)
        }
        Err(AddPortError::RequestError(e)) => return Err(refused(&e)),
        Err(e) => {
            *gateway = Some(g);
            return Err(refused(&e));
        }
    };
    let ip = g.get_external_ip().map_err(|e| refused(&e))?;
    *gateway = Some(g);
    Ok(Mapped { external: SocketAddr::new(ip, port), lease })
}

/// The address of this host that the router sees: the one a packet to it leaves from. A UDP
/// socket's `connect` sends nothing; it only asks the kernel for the route.
fn local_ip_towards(router: SocketAddr) -> io::Result<IpAddr> {
    let any: IpAddr = if router.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let s = UdpSocket::bind(SocketAddr::new(any, 0))?;
    s.connect(router)?;
    Ok(s.local_addr()?.ip())
}
