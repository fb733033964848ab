"""The trainable networks of the method, as plain ``nn.Module``s over normalized features.

- ``inversion``: feature inversion I_l and its PatchGAN discriminator (supplementary, "Feature Inversion").
- ``deep``: deepest-level translator (Table 1) and the WGAN-GP feature critic.
- ``cascade``: coarse-to-fine translator T^l (Table 3), AdaIN, the AdaIN parameter predictor M^l (Table 2), and
  the cascade of trained levels used at inference.
- ``vae``: deepVAE synthesis (supplementary section 6): E_5 and G_5 (Tables 4-5), the conditional generators
  G_l, and the synthesis cascade used at inference.

Channel counts and strides are constructor arguments taken from the backbone, never VGG constants.
"""

from .cascade import AdaIN, AdaINPredictor, CascadeModel, CascadeTranslator, adain, predictor_convs
from .deep import DeepTranslator, FeatureCritic, critic_sizes, group_count
from .inversion import InversionNet, PatchDiscriminator
from .vae import (SynthesisModel, SynthGenerator, VAEDecoder, VAEEncoder, critic_input, latent_grid,
                  reparameterize)

__all__ = [
    "AdaIN",
    "AdaINPredictor",
    "CascadeModel",
    "CascadeTranslator",
    "DeepTranslator",
    "FeatureCritic",
    "InversionNet",
    "PatchDiscriminator",
    "adain",
    "critic_sizes",
    "group_count",
    "predictor_convs",
    "SynthGenerator",
    "SynthesisModel",
    "VAEDecoder",
    "VAEEncoder",
    "critic_input",
    "latent_grid",
    "reparameterize",
]
