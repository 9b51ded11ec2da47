"""Transit Gateway dataplane: packet-level forwarding, AZ affinity, appliance mode, stateful appliances."""
