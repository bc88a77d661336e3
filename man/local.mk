# Man pages: one man3 page per public function (revtun_*.3, named as the
# function), the header-only libevent adapter (revtun_libevent.3), the
# overview revtun(7), and the pages of the installed example programs
# (man/revtun-upstream-proxy.1 is listed in examples/local.mk, not here, so
# that it is not listed twice). tests/symbols.sh checks that the man3 pages
# match the public header; `mandoc -Tlint -Wwarning man/*.3 man/*.7 man/*.1`
# must stay quiet.
dist_man_MANS += \
	man/revtun_acceptor_accept.3 \
	man/revtun_acceptor_accept_with_meta.3 \
	man/revtun_acceptor_config_validate.3 \
	man/revtun_acceptor_free.3 \
	man/revtun_acceptor_new.3 \
	man/revtun_acceptor_pending.3 \
	man/revtun_acceptor_ping_interval_ms.3 \
	man/revtun_acceptor_set_header_prefix.3 \
	man/revtun_acceptor_set_limit.3 \
	man/revtun_acceptor_set_transport.3 \
	man/revtun_access_logger_register.3 \
	man/revtun_close_reason_name.3 \
	man/revtun_cluster_member.3 \
	man/revtun_cluster_node_count.3 \
	man/revtun_config_access_log.3 \
	man/revtun_config_access_log_count.3 \
	man/revtun_config_detailed_stats.3 \
	man/revtun_config_max_connections_per_node.3 \
	man/revtun_config_ping_failure_threshold.3 \
	man/revtun_config_reporter.3 \
	man/revtun_config_stat_prefix.3 \
	man/revtun_config_tenant_isolation.3 \
	man/revtun_config_validate.3 \
	man/revtun_conn_meta_free.3 \
	man/revtun_conn_meta_new.3 \
	man/revtun_conn_meta_set_dynamic.3 \
	man/revtun_conn_meta_set_filter_state.3 \
	man/revtun_directory_free.3 \
	man/revtun_directory_new.3 \
	man/revtun_event_close_reason.3 \
	man/revtun_event_cluster_id.3 \
	man/revtun_event_cluster_key.3 \
	man/revtun_event_fd.3 \
	man/revtun_event_initiation_time_ms.3 \
	man/revtun_event_initiator_connection_id.3 \
	man/revtun_event_initiator_worker_id.3 \
	man/revtun_event_kind.3 \
	man/revtun_event_kind_name.3 \
	man/revtun_event_local_addr.3 \
	man/revtun_event_meta_count.3 \
	man/revtun_event_meta_find.3 \
	man/revtun_event_meta_get.3 \
	man/revtun_event_miss_count.3 \
	man/revtun_event_node_id.3 \
	man/revtun_event_node_key.3 \
	man/revtun_event_peer.3 \
	man/revtun_event_remote_addr.3 \
	man/revtun_event_sock_user.3 \
	man/revtun_event_socket_state.3 \
	man/revtun_event_sys_errno.3 \
	man/revtun_event_tenant_id.3 \
	man/revtun_event_time_ms.3 \
	man/revtun_event_worker.3 \
	man/revtun_export_next.3 \
	man/revtun_export_socket.3 \
	man/revtun_foreach_cluster.3 \
	man/revtun_foreach_node.3 \
	man/revtun_free.3 \
	man/revtun_get_user_data.3 \
	man/revtun_handoff.3 \
	man/revtun_handoff_by_cluster.3 \
	man/revtun_handoff_cancel.3 \
	man/revtun_handoff_request.3 \
	man/revtun_handoff_select.3 \
	man/revtun_hostsel_free.3 \
	man/revtun_hostsel_new.3 \
	man/revtun_hostsel_render.3 \
	man/revtun_idle_count.3 \
	man/revtun_idle_count_cluster.3 \
	man/revtun_import_socket.3 \
	man/revtun_libevent.3 \
	man/revtun_lookup_cluster.3 \
	man/revtun_mark_dead.3 \
	man/revtun_new.3 \
	man/revtun_next_timeout.3 \
	man/revtun_next_timeout_ms.3 \
	man/revtun_note_goaway.3 \
	man/revtun_note_keepalive_timeout.3 \
	man/revtun_options_free.3 \
	man/revtun_options_new.3 \
	man/revtun_options_new_with_allocator.3 \
	man/revtun_options_set_access_log_cb.3 \
	man/revtun_options_set_allocator.3 \
	man/revtun_options_set_arrival_cb.3 \
	man/revtun_options_set_close_cb.3 \
	man/revtun_options_set_directory.3 \
	man/revtun_options_set_io_cb.3 \
	man/revtun_options_set_limit.3 \
	man/revtun_options_set_log_cb.3 \
	man/revtun_options_set_module_path.3 \
	man/revtun_options_set_reporter_cb.3 \
	man/revtun_options_set_seed.3 \
	man/revtun_options_set_timer_cb.3 \
	man/revtun_options_set_user_data.3 \
	man/revtun_options_set_worker_name.3 \
	man/revtun_process_io.3 \
	man/revtun_process_io_batch.3 \
	man/revtun_process_io_events.3 \
	man/revtun_reg_free.3 \
	man/revtun_reg_new.3 \
	man/revtun_reg_reset.3 \
	man/revtun_reg_set_ids.3 \
	man/revtun_reg_set_initiator.3 \
	man/revtun_reg_set_ping_interval.3 \
	man/revtun_reg_set_sock_user.3 \
	man/revtun_register_socket.3 \
	man/revtun_reopen_logs.3 \
	man/revtun_reporter_register.3 \
	man/revtun_rping_strip.3 \
	man/revtun_rping_strip_active.3 \
	man/revtun_socket_identity.3 \
	man/revtun_socket_state.3 \
	man/revtun_socket_state_name.3 \
	man/revtun_stats_foreach.3 \
	man/revtun_stats_get.3 \
	man/revtun_stats_prometheus.3 \
	man/revtun_stats_prometheus_ex.3 \
	man/revtun_status_name.3 \
	man/revtun_strerror.3 \
	man/revtun_tick.3 \
	man/revtun_transport_free.3 \
	man/revtun_transport_new.3 \
	man/revtun_transport_set_diagnostics.3 \
	man/revtun_transport_set_io.3 \
	man/revtun_transport_set_session.3 \
	man/revtun_version.3 \
	man/revtun_walk_clusters.3 \
	man/revtun_walk_nodes.3 \
	man/revtun_walk_histograms.3 \
	man/revtun_walk_stats.3 \
	man/revtun.7

if HAVE_EXAMPLES
dist_man_MANS += man/revtun-demo-backend.1 man/revtun-downstream-agent.1
else
EXTRA_DIST += man/revtun-demo-backend.1 man/revtun-downstream-agent.1
endif

# ---- the Redis fleet directory (lib/redis/local.mk) -------------------------
# One page per function of include/revtun/redis.h (tests/symbols_redis.sh
# checks them against it) and revtun_redis(7), installed with the library.
REDIS_MANS = \
	man/revtun_redis.7 \
	man/revtun_redis_free.3 \
	man/revtun_redis_lookup_cluster.3 \
	man/revtun_redis_lookup_node.3 \
	man/revtun_redis_new.3 \
	man/revtun_redis_on_event.3 \
	man/revtun_redis_options_free.3 \
	man/revtun_redis_options_new.3 \
	man/revtun_redis_options_set_auth.3 \
	man/revtun_redis_options_set_backoff.3 \
	man/revtun_redis_options_set_cache_ttl.3 \
	man/revtun_redis_options_set_heartbeat.3 \
	man/revtun_redis_options_set_instance.3 \
	man/revtun_redis_options_set_log_cb.3 \
	man/revtun_redis_options_set_prefix.3 \
	man/revtun_redis_options_set_server.3 \
	man/revtun_redis_options_set_tenant_isolation.3 \
	man/revtun_redis_options_set_timeout.3 \
	man/revtun_redis_options_set_token.3 \
	man/revtun_redis_owner_address.3 \
	man/revtun_redis_owner_claim.3 \
	man/revtun_redis_owner_generation.3 \
	man/revtun_redis_owner_instance.3 \
	man/revtun_redis_start.3 \
	man/revtun_redis_stats_foreach.3 \
	man/revtun_redis_stats_get.3 \
	man/revtun_redis_status_name.3 \
	man/revtun_redis_stop.3
if HAVE_REDIS
dist_man_MANS += $(REDIS_MANS)
else
EXTRA_DIST += $(REDIS_MANS)
endif

# ---- TLS with OpenSSL (lib/openssl/local.mk) --------------------------------
# One page per function of include/revtun/openssl.h (tests/symbols_openssl.sh
# checks them against it), installed with the library.
OPENSSL_MANS = \
	man/revtun_openssl_client_ctx.3 \
	man/revtun_openssl_free.3 \
	man/revtun_openssl_handoff_new.3 \
	man/revtun_openssl_new.3 \
	man/revtun_openssl_server_ctx.3 \
	man/revtun_openssl_set_ctx.3 \
	man/revtun_openssl_transport.3
if HAVE_OPENSSL
dist_man_MANS += $(OPENSSL_MANS)
else
EXTRA_DIST += $(OPENSSL_MANS)
endif
