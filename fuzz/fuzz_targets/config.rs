//! `config.json` validation of each component; the first byte picks the component.
#![no_main]
use cyberhost_engine::models::config_json::ConfigJson;
use cyberhost_engine::models::cyberhost::config::CyberHostConfig;
use cyberhost_engine::models::unet2d::UNet2DConditionModelConfig;
use cyberhost_engine::models::unet_motion::UNetMotionModelConfig;
use cyberhost_engine::models::vae::AutoencoderKLConfig;
use cyberhost_engine::models::wav2vec2::Wav2Vec2Config;
use cyberhost_engine::sampler::ddim::DdimConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if which % 6 == 5 {
        let _ = DdimConfig::from_json_str(text);
        return;
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { return };
    match which % 6 {
        0 => {
            if let Ok(c) = ConfigJson::from_value("vae", &v) {
                let _ = AutoencoderKLConfig::from_config(&c);
            }
        }
        1 => drop(UNet2DConditionModelConfig::from_json(&v)),
        2 => drop(UNetMotionModelConfig::from_json(&v)),
        3 => {
            if let Ok(c) = ConfigJson::from_value("audio_encoder", &v) {
                let _ = Wav2Vec2Config::from_config(&c);
            }
        }
        _ => drop(CyberHostConfig::from_value("cyberhost", &v)),
    }
});
