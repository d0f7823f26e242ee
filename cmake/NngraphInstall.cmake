# Installation of the engine, its plugins and the plugin SDK is defined here.
