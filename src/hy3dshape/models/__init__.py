"""Neural networks of the shape stage: DINOv2 encoder, conditioner, DiT denoiser, shape VAE decoder."""
