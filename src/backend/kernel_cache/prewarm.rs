//! Handing the stored SPIR-V to the graphics driver ahead of the first forecast, many kernels at
//! once, so that the driver's own shader cache holds them when CubeCL asks.
//!
//! CubeCL keeps each compiled kernel's SPIR-V in the kernel cache (with `vulkan`) but creates a
//! kernel's pipeline only when it first launches, one after the other on its device thread. The
//! driver turns each pipeline into machine code there (on an H100, ~11 s for W-small's ~130
//! kernels) and keeps the result in its own on-disk cache. On a machine whose kernel cache came from a bundle
//! the driver has compiled none of them yet, and a first forecast waits for ~100 such
//! compilations in a row. Creating the same pipelines here, on a device opened as CubeCL opens
//! one and from every core, fills the driver's cache in a fraction of that time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cubecl::future::block_on;
use cubecl_server::compiler::{KernelCacheKey, build_id_hash, compilation_store};
use cubecl_spirv::SpirvCacheEntry;
use cubecl_wgpu::wgpu;

use super::disk::{Prewarmed, configured};
use crate::error::Result;

type Key = (u64, KernelCacheKey);

pub(super) fn prewarm() -> Result<Prewarmed> {
    configured();
    let start = Instant::now();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::VULKAN,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let build = build_id_hash();
    let mut report = Prewarmed {
        adapters: Vec::new(),
        pipelines: 0,
        failed: 0,
        threads: 0,
        seconds: 0.0,
    };
    let mut seen = Vec::new();
    for adapter in block_on(instance.enumerate_adapters(wgpu::Backends::VULKAN)) {
        let info = adapter.get_info();
        // A software rasterizer compiles nothing worth caching (and Mesa's lavapipe is what
        // `choose_backend` passes over); the same card twice is warmed once.
        if info.device_type == wgpu::DeviceType::Cpu || seen.contains(&(info.vendor, info.device)) {
            continue;
        }
        seen.push((info.vendor, info.device));
        // The namespace CubeCL's wgpu server keeps this adapter's SPIR-V under.
        let Some(mut store) = compilation_store::<Key, SpirvCacheEntry>(
            "vulkan",
            format!("spirv_{}_{}", info.vendor, info.device),
        ) else {
            // The compiled-kernel store is off (a cubecl.toml says so): nothing is stored.
            break;
        };
        let mut kernels = Vec::new();
        store.scan(|key, entry| {
            // Entries of another build of the application are never loaded: skip them.
            if key.1.build_id == build {
                kernels.push(entry);
            }
        });
        if kernels.is_empty() {
            continue;
        }
        // The largest modules first: one large matmul tile can take the driver seconds, and the
        // call lasts at least that long; started last, it would add to the rest.
        kernels.sort_by_key(|k| std::cmp::Reverse(k.kernel.assembled_module.len()));
        let device = match block_on(cubecl_wgpu::vulkan::try_request_vulkan_device(&adapter)) {
            Ok(Some((device, _queue))) => device,
            Ok(None) | Err(_) => {
                log::debug!(
                    "prewarm: {} has no native Vulkan device; its kernels compile on first use",
                    info.name
                );
                continue;
            }
        };
        let (created, failed, threads) = create_all(&device, &kernels);
        log::info!(
            "prewarm: {created} stored GPU kernels compiled by the {} driver in {:.2} s on {threads} threads ({failed} refused)",
            info.name,
            start.elapsed().as_secs_f64()
        );
        report
            .adapters
            .push(format!("{} ({})", info.name, info.driver_info));
        report.pipelines += created;
        report.failed += failed;
        report.threads = report.threads.max(threads);
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Creates every kernel's pipeline as CubeCL's wgpu server does, on all cores. Returns
/// (created, refused, threads).
fn create_all(device: &wgpu::Device, kernels: &[SpirvCacheEntry]) -> (usize, usize, usize) {
    // A refusal is reported to the scope pushed around it; anything that escapes one must not
    // reach wgpu's default handler, which panics.
    device.on_uncaptured_error(Arc::new(|e| log::debug!("prewarm: {e}")));
    let threads = std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .min(kernels.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(kernel) = kernels.get(i) else { break };
                    if !create(device, kernel) {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let refused = refused.into_inner();
    (kernels.len() - refused, refused, threads)
}

/// One kernel's module, layout and pipeline, described exactly as `cubecl-wgpu` describes them
/// (so the driver's cache key is the one CubeCL's own creation looks up). Returns whether the
/// device accepted them.
fn create(device: &wgpu::Device, entry: &SpirvCacheEntry) -> bool {
    let name = entry.entrypoint_name.as_str();
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
    // SAFETY: the module is SPIR-V that CubeCL compiled for this adapter and stored; CubeCL
    // creates the same module from the same words before launching the kernel. Nothing is
    // dispatched from it here.
    #[allow(unsafe_code)] // wgpu's passthrough shader module (docs/architecture.md, "Unsafe code").
    let module = unsafe {
        device.create_shader_module_passthrough(wgpu::ShaderModuleDescriptorPassthrough {
            label: Some(name),
            spirv: Some(std::borrow::Cow::Borrowed(&entry.kernel.assembled_module)),
            entry_points: std::borrow::Cow::Borrowed(&[wgpu::PassthroughShaderEntryPoint {
                name: std::borrow::Cow::Borrowed(name),
                // Read by the Metal backend only.
                workgroup_size: (1, 1, 1),
            }]),
            ..Default::default()
        })
    };
    // Metadata in immediates when the kernel declared them, else one uniform buffer.
    let (groups, immediate_size) = match entry.kernel.immediate_size {
        Some(size) => (None, size as u32),
        None => (
            Some(
                device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: None,
                    entries: &[wgpu::BindGroupLayoutEntry {
                        binding: 0,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Uniform,
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    }],
                }),
            ),
            0,
        ),
    };
    let group_list = [groups.as_ref()];
    let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: None,
        bind_group_layouts: if groups.is_some() { &group_list } else { &[] },
        immediate_size,
    });
    let _pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(name),
        layout: Some(&layout),
        module: &module,
        entry_point: Some(name),
        compilation_options: wgpu::PipelineCompilationOptions {
            zero_initialize_workgroup_memory: false,
            ..Default::default()
        },
        cache: None,
    });
    let internal = internal.pop();
    let validation = validation.pop();
    let refusal = block_on(async { internal.await.or(validation.await) });
    if let Some(e) = &refusal {
        log::debug!("prewarm: the driver refused `{name}`: {e}");
    }
    refusal.is_none()
}
