//! [`MultiDevice`]: one forecast spread over several devices of a host, each with its own copy
//! of the model, run concurrently and returned as one forecast in the input's order, with one
//! [`MultiReport`] of what ran where.
//!
//! Forecasting is data-parallel over items (a batch row: the variates that attend to each
//! other), so a batch is cut into consecutive slices of items, one per device, sized alike
//! ([`split`]); each device forecasts its slice with its own weights and fallback, and the
//! slices' forecasts are concatenated on the first device. Nothing crosses between devices
//! during a forecast. For runs past one host, see docs/scaling.md.

use std::fmt;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use crate::backend::{Backend, LayerOps, Report};
use crate::error::{Error, InputKind, Result};
use crate::forecast::{Forecast, ForecastParts, ForecastRequest, Forecaster, Progress, Step};
use crate::rng::DrawWindow;

/// The slices of a batch of `items` over `devices` devices: consecutive ranges whose sizes
/// differ by one at most, the larger first; a batch of fewer items than devices uses one
/// device per item. Empty if either count is 0.
///
/// ```
/// use toto_fallback::multi::split;
///
/// assert_eq!(split(7, 3), [0..3, 3..5, 5..7]);
/// assert_eq!(split(2, 4), [0..1, 1..2]);
/// ```
pub fn split(items: usize, devices: usize) -> Vec<Range<usize>> {
    let used = devices.min(items);
    if used == 0 {
        return Vec::new();
    }
    let (base, extra) = (items / used, items % used);
    let mut start = 0;
    (0..used)
        .map(|d| {
            let len = base + usize::from(d < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

/// One model on each of several devices, forecasting a batch together: the batch is cut into
/// consecutive slices of items ([`split`]), each device forecasts its slice concurrently, and
/// the slices' forecasts come back as one [`Forecast`] in the input's order, on the first
/// device.
///
/// - **Devices.** Any list of backends, one model each: the discrete GPUs of a host
///   ([`Wgpu::discrete_gpus`](crate::Wgpu::discrete_gpus), each in a
///   [`FallbackBackend`](crate::FallbackBackend) with its own CPU fallback), chosen adapters,
///   or, for tests, several CPU backends. [`MultiDevice::load`] loads the model on each, in
///   parallel.
/// - **Results.** The same as one device's forecast of the whole batch: each item's forecast
///   reads its own slice only, every slice keeps the batch's padded length, and Toto 1.0's
///   sample paths are drawn through [`Backend::with_draw_window`], so that each device draws
///   what one device would draw for its items after the same [`MultiDevice::seed`] (for
///   backends that give such a window: [`Wgpu`](crate::Wgpu), [`NdArray`](crate::NdArray) and
///   fallbacks of them). Values are equal bit for bit where the devices compute alike (the
///   tests check it on CPU backends); GPUs of one model agree to rounding, as one GPU does
///   with itself at another batch size.
/// - **Seeding.** [`MultiDevice::seed`] seeds every device's backend. A forecast advances the
///   call sequence of the devices it uses; a batch of fewer items than devices leaves the
///   others behind, so reseed before a forecast that must reproduce a single device's.
/// - **Errors.** The request is checked once against the whole batch before any device
///   starts; a device that then fails makes the call fail with [`Error::Device`], which names
///   it and its items. The input is borrowed, so nothing of it is lost: retry without the
///   device, or with fewer items.
/// - **Threads.** Each device after the first forecasts on a thread that the `MultiDevice`
///   starts with it and keeps until it is dropped, the first device on the calling thread: burn
///   keeps an execution stream per thread, and a device whose work moved to a fresh thread every
///   call would start a fresh stream every call (on two H100s that cost 30–90 ms a call).
///   Several threads may call [`MultiDevice::predict`] at once; their slices queue on
///   each device's thread.
/// - **Report.** [`MultiDevice::report`] gives what ran where on each device and in total
///   (for backends that route ops, such as [`FallbackBackend`](crate::FallbackBackend)).
///
/// ```
/// use toto_fallback::forecast::{ForecastOptions, ForecastRequest, Series};
/// use toto_fallback::multi::MultiDevice;
/// use toto_fallback::{NdArray, Toto2};
///
/// // Two CPU backends here; on a GPU host: `Wgpu::discrete_gpus(GraphicsApi::Auto)?` each in
/// // a `FallbackBackend::new(gpu, NdArray::new())`.
/// let devices = [NdArray::seeded(0), NdArray::seeded(0)];
/// let model = MultiDevice::load(devices, |b| Toto2::from_dir(b, "tests/fixtures/toto2-tiny"))?;
/// let series = Series::from_batch(&[
///     vec![vec![1.0, 2.0, 3.0, 2.0]],
///     vec![vec![5.0, 4.0, 5.0, 6.0]],
///     vec![vec![0.5, 0.7, 0.6, 0.8]],
/// ])?;
/// let request = ForecastRequest::new(series, 8).with_options(ForecastOptions::gluonts(8));
/// let forecast = model.predict(&request)?;
/// assert_eq!(forecast.mean().dims(), [3, 1, 8]); // items 0..2 on device 0, item 2 on device 1
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug)]
pub struct MultiDevice<M> {
    replicas: Arc<Vec<M>>,
    /// A long-lived thread for each device after the first (the first works on the calling
    /// thread): a device's work keeps one thread, and so one burn execution stream, from call
    /// to call.
    workers: Vec<Worker>,
}

/// Work for a device's thread.
type Job = Box<dyn FnOnce() + Send>;

/// A device's long-lived thread, fed jobs over a channel; it ends when the channel closes.
#[derive(Debug)]
struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn start(device: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(format!("toto-device-{device}"))
            .spawn(move || {
                for job in queue {
                    job();
                }
            })?;
        Ok(Worker {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queues `job`; a job that cannot be queued (the thread is gone) is dropped, which its
    /// caller sees as a closed result channel.
    fn run(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once its queued jobs are done.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<M: Forecaster> MultiDevice<M> {
    /// A forecaster over `replicas`, one model per device, in the order their devices are
    /// numbered in errors and reports. Starts a thread for each device after the first.
    ///
    /// # Errors
    /// [`Error::Input`] if `replicas` is empty; [`Error::Device`] if the system refuses a
    /// device's thread.
    pub fn new(replicas: Vec<M>) -> Result<Self> {
        if replicas.is_empty() {
            return Err(Error::input(
                "MultiDevice::new",
                InputKind::Empty,
                "no device: give at least one model".to_owned(),
            ));
        }
        let workers = (1..replicas.len())
            .map(|d| {
                Worker::start(d).map_err(|e| {
                    let reason = format!("the system refused the device's thread: {e}");
                    let source = Error::input("MultiDevice::new", InputKind::Failed, reason);
                    device_error(d, replicas[d].backend(), None, source)
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(MultiDevice {
            replicas: Arc::new(replicas),
            workers,
        })
    }

    /// Loads a model on each of `backends` with `load`, all at once (a thread per device),
    /// and makes a forecaster of them.
    ///
    /// # Errors
    /// [`Error::Input`] if `backends` is empty; [`Error::Device`] naming the first device
    /// whose `load` failed, with its error.
    pub fn load<I, F>(backends: I, load: F) -> Result<Self>
    where
        I: IntoIterator<Item = M::Backend>,
        F: Fn(&M::Backend) -> Result<M> + Sync,
        M: Send,
    {
        let backends: Vec<M::Backend> = backends.into_iter().collect();
        let load = &load;
        let loaded: Vec<Result<M>> = std::thread::scope(|scope| {
            let handles: Vec<_> = backends
                .iter()
                .map(|b| scope.spawn(move || load(b)))
                .collect();
            handles.into_iter().map(join).collect()
        });
        let replicas = loaded
            .into_iter()
            .zip(&backends)
            .enumerate()
            .map(|(index, (model, b))| model.map_err(|e| device_error(index, b, None, e)))
            .collect::<Result<Vec<M>>>()?;
        Self::new(replicas)
    }

    /// The models, one per device.
    pub fn replicas(&self) -> &[M] {
        &self.replicas[..]
    }

    /// The number of devices.
    pub fn devices(&self) -> usize {
        self.replicas.len()
    }

    /// Seeds every device's backend with `seed` ([`Backend::seed`]).
    pub fn seed(&self, seed: u64) {
        for r in self.replicas.iter() {
            r.backend().seed(seed);
        }
    }

    /// Forecasts `request` ([`Forecaster::predict`]): the series' items [`split`] over the
    /// devices, each slice forecast on its device concurrently, the slices' forecasts
    /// concatenated in the input's order on the first device. The request's progress callback
    /// hears the passes of every device together.
    ///
    /// # Errors
    /// The model's [`Forecaster::predict`] errors for the whole batch, checked before any
    /// device starts; [`Error::Device`] naming the first device (in device order) that failed.
    pub fn predict(&self, request: &ForecastRequest) -> Result<Forecast<M::Backend>> {
        let shape = request.series.shape();
        let options = &request.options;
        let first = &self.replicas[0];
        first.check_request(shape, options)?;
        let slices = split(shape[0], self.replicas.len());
        if slices.is_empty() {
            return Err(Error::input(
                "MultiDevice::predict",
                InputKind::Empty,
                format!("the series {shape:?} has no item to forecast"),
            ));
        }
        let inner = first.draws_per_item(shape, options);
        let progress = options
            .progress
            .clone()
            .map(|p| Combined::progress(p, slices.len()));
        let device0 = first.backend().device();
        // Devices 1.. on their threads, each moving its part to the first device as soon as it
        // is done (the move waits for its device) while the others may still be working.
        let pending: Vec<_> = slices
            .iter()
            .enumerate()
            .skip(1)
            .map(|(d, range)| {
                let (done, result) = mpsc::sync_channel::<Result<ForecastParts>>(1);
                let slice = request.items(range.clone()).map(|mut slice| {
                    slice.options.progress = progress.as_ref().map(|p| p(d));
                    slice
                });
                let (replicas, device0, job_range) =
                    (Arc::clone(&self.replicas), device0.clone(), range.clone());
                self.workers[d - 1].run(Box::new(move || {
                    let work = || -> Result<ForecastParts> {
                        let part =
                            run_slice(&replicas[d], d, &slice?, shape[0], &job_range, inner)?;
                        let start = Instant::now();
                        let part = part.into_parts(&device0);
                        log::debug!(
                            "device {d}: moved to device 0 in {:.1} ms",
                            start.elapsed().as_secs_f64() * 1e3
                        );
                        Ok(part)
                    };
                    let out =
                        catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|p| Err(panicked(p)));
                    let _ = done.send(out);
                }));
                (d, range.clone(), result)
            })
            .collect();
        // Device 0 on the calling thread.
        let head = {
            let range = &slices[0];
            if range.len() == shape[0] {
                // One slice: the request as given, its progress the whole call's.
                run_slice(first, 0, request, shape[0], range, inner)
            } else {
                let mut slice = request.items(range.clone())?;
                slice.options.progress = progress.as_ref().map(|p| p(0));
                run_slice(first, 0, &slice, shape[0], range, inner)
            }
        };
        let rest: Vec<_> = pending
            .into_iter()
            .map(|(d, range, result)| {
                let part = result.recv().unwrap_or_else(|_| {
                    Err(Error::input(
                        "MultiDevice (a device's thread)",
                        InputKind::Failed,
                        "the thread stopped before answering".to_owned(),
                    ))
                });
                (d, range, part)
            })
            .collect();
        let head =
            head.map_err(|e| device_error(0, first.backend(), Some(slices[0].clone()), e))?;
        if rest.is_empty() {
            return Ok(head);
        }
        let mut parts = vec![head.into_parts(device0)];
        for (d, range, result) in rest {
            let backend = self.replicas[d].backend();
            parts.push(result.map_err(|e| device_error(d, backend, Some(range), e))?);
        }
        Forecast::concat(parts, first.backend())
    }

    /// What ran where on each device since its backend was made or last reset, and the sum
    /// over devices; `None` when the backends do not route ops
    /// ([`Backend::fallback_report`]: [`FallbackBackend`](crate::FallbackBackend) does).
    pub fn report(&self) -> Option<MultiReport> {
        let devices = self
            .replicas
            .iter()
            .map(|r| r.backend().fallback_report())
            .collect::<Option<Vec<Report>>>()?;
        let total = Report::sum(&devices)?;
        Some(MultiReport { devices, total })
    }

    /// Zeroes every device's report counters.
    pub fn reset_report(&self) {
        for r in self.replicas.iter() {
            r.backend().reset_fallback_report();
        }
    }
}

/// Device `d`'s forecast of `slice`, items `range` of a batch of `items` (the whole batch
/// when `range` covers it), through a draw window when the forecast draws and the slice is not
/// the whole batch.
fn run_slice<M: Forecaster>(
    replica: &M,
    d: usize,
    slice: &ForecastRequest,
    items: usize,
    range: &Range<usize>,
    inner: Option<usize>,
) -> Result<Forecast<M::Backend>> {
    let start = Instant::now();
    let window = if range.len() == items {
        None
    } else {
        inner
            .and_then(|inner| DrawWindow::new(items, range.start, range.len(), inner))
            .and_then(|w| replica.backend().with_draw_window(w))
    };
    let out = replica.predict_drawing(slice, window.as_ref());
    // Until the forecast returned: its device may still be working.
    log::debug!(
        "device {d} ({}) forecast items {range:?} in {:.1} ms",
        replica.backend().name(),
        start.elapsed().as_secs_f64() * 1e3
    );
    out
}

/// A scoped thread's result, a panic becoming an error.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle.join().unwrap_or_else(|p| Err(panicked(p)))
}

/// A device thread's panic as an error.
fn panicked(panic: Box<dyn std::any::Any + Send>) -> Error {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned());
    Error::input(
        "MultiDevice (a device's thread panicked)",
        InputKind::Failed,
        message,
    )
}

fn device_error<B: LayerOps>(
    index: usize,
    backend: &B,
    items: Option<Range<usize>>,
    e: Error,
) -> Error {
    Error::Device {
        index,
        name: backend.name().to_owned(),
        items,
        source: Box::new(e),
    }
}

/// The progress of every device's slice as one: the passes done summed over devices, out of
/// every device's total.
struct Combined {
    user: Progress,
    done: Mutex<Vec<Step>>,
}

impl Combined {
    /// A factory of per-device callbacks reporting to `user`.
    fn progress(user: Progress, devices: usize) -> impl Fn(usize) -> Progress {
        let combined = Arc::new(Combined {
            user,
            done: Mutex::new(vec![Step { done: 0, total: 0 }; devices]),
        });
        move |device| {
            let combined = Arc::clone(&combined);
            Progress::new(move |step| combined.tell(device, step))
        }
    }

    fn tell(&self, device: usize, step: Step) {
        let (done, total) = {
            let mut steps = self.done.lock().unwrap_or_else(|e| e.into_inner());
            steps[device] = step;
            // Every slice makes the same passes: before a device's first report, count its
            // total as the reporting device's.
            let total = step.total * steps.len();
            (steps.iter().map(|s| s.done).sum::<usize>(), total)
        };
        self.user.report(done, total);
    }
}

/// What ran where on each device of a [`MultiDevice`], and in total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiReport {
    /// Each device's report, in device order.
    pub devices: Vec<Report>,
    /// The sum over devices.
    pub total: Report,
}

impl fmt::Display for MultiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, report) in self.devices.iter().enumerate() {
            writeln!(f, "device {i}: {report}")?;
        }
        write!(f, "all {} devices: {}", self.devices.len(), self.total)
    }
}
