"""The co-processor: controller, queues and engines around one memory port."""
