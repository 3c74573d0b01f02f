"""Thin rclpy adapters over the ROS-free core: parameters in, messages out. One node per module, each with main()."""
