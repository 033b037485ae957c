//! The sampler loop replayed from one captured CUDA graph per clip, on the stand-in driver
//! (PTX emulator) through cudarc: bit-identical to plain launches, and no device allocation
//! inside the step loop (counted by the stand-in driver).

mod common;

use cyberhost_engine::backends::cuda::CudaBackend;
use cyberhost_engine::backends::Backend;
use cyberhost_engine::pipeline::checkpoint::WeightsSource;
use cyberhost_engine::pipeline::conditions::PoseFile;
use cyberhost_engine::pipeline::generate::{Event, Request};
use cyberhost_engine::pipeline::presets::Preset;

struct Run {
    /// Final latents, as bits.
    z: Vec<u32>,
    /// Latents after every step, as bits.
    trace: Vec<Vec<u32>>,
    /// Stand-in counters (alloc calls, graph launches, kernel launches) at every step event.
    at_step: Vec<(u64, u64, u64)>,
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn graph_replayed_clip_is_bit_identical_and_allocation_free() {
    // One warp schedule per launch: this test is about replay; the kernel tests search races.
    std::env::set_var("PTX_EMU_SCHEDULES", "1");
    let be = CudaBackend::new_emulated(0).expect("stand-in driver (cargo build -p ptx-emu-driver)");
    let (img, speech) = common::reference_inputs(Some(8_000));
    // 32×32 is the smallest size the tiny preset takes (VAE ×8, two U-Net downsamplings).
    let req = Request {
        seed: 11,
        steps: Some(3),
        size: Some((32, 32)),
        ..Default::default()
    };
    let comps = WeightsSource::Preset {
        preset: Preset::Tiny,
        seed: 0,
    }
    .load(&be)
    .unwrap();
    let p = comps
        .prepare(&be, &img, &speech, &PoseFile::default(), &req, &mut |_| {})
        .unwrap();
    let scheduler = comps.scheduler(3).unwrap();
    let motion = comps.initial_motion(&be, &p).unwrap();

    let run = |graphs: bool| -> Run {
        be.set_graphs(graphs);
        let noise = comps.clip_noise(&be, &p, req.seed, 0).unwrap();
        let mut trace = Vec::new();
        let mut at_step = Vec::new();
        let dev = be.device().clone();
        let z = comps
            .run_clip(
                &be,
                &p,
                &scheduler,
                &motion,
                noise,
                0,
                Some(&mut trace),
                &mut |e| {
                    if let Event::Step { .. } = e {
                        let s = dev.emulator_stats().expect("stand-in counters");
                        at_step.push((s.alloc_calls, s.graph_launches, s.kernel_launches));
                    }
                },
            )
            .unwrap();
        Run {
            z: bits(&be.to_f32(&z).unwrap()),
            trace: trace.iter().map(|t| bits(t)).collect(),
            at_step,
        }
    };

    let plain = run(false);
    let graphed = run(true);
    let info = be.last_step_graph().expect("the graph path ran");
    eprintln!("step arena: {info:?}");

    assert_eq!(plain.trace.len(), 3);
    assert_eq!(graphed.trace.len(), 3);
    for (s, (a, b)) in plain.trace.iter().zip(&graphed.trace).enumerate() {
        let diff = a.iter().zip(b).filter(|(x, y)| x != y).count();
        assert_eq!(
            diff, 0,
            "step {s}: {diff} latents differ between graph replay and plain launches"
        );
    }
    assert_eq!(plain.z, graphed.z);

    // Plain launches allocate every step (the counter works) ...
    let (a0, _, k0) = plain.at_step[0];
    let (a2, _, k2) = plain.at_step[2];
    assert!(
        a2 > a0,
        "plain launches should allocate per step ({a0} → {a2})"
    );
    assert!(k2 > k0);
    // ... graph replay: one graph launch per step, no allocation between steps.
    for w in graphed.at_step.windows(2) {
        let ((a, g, k), (a_next, g_next, k_next)) = (w[0], w[1]);
        assert_eq!(a_next, a, "device allocation inside the step loop");
        assert_eq!(g_next, g + 1, "one graph launch per step");
        assert_eq!(
            k_next - k,
            (k2 - k0) / 2,
            "a replay runs the kernels of one plain step"
        );
    }
    assert!(info.allocations > 0 && info.arena_bytes <= info.naive_bytes);
}
