/*
 * tincoso subscribe guard: a Mosquitto 2.0 plugin (API v5) for the device listener.
 *
 * Mosquitto's acl_file checks only reads and writes, never subscriptions ("FIXME -
 * implement ACL subscription strings", src/security_default.c). So a device may subscribe
 * to `$share/<ingest group>/tincoso/v1/+/telemetry/+`: the broker then gives that device a
 * share of every device's telemetry and drops it (the read is denied), and the ingest never
 * sees it. This plugin allows a device's SUBSCRIBE only for the exact topics named in
 * `plugin_opt_subscribe` (space-separated, `%u` = the client's user name), refuses every
 * other filter (`$share/...`, `#`, `$SYS/#`, wildcards, other devices' subtrees) with a
 * SUBACK failure, and defers everything else to the acl_file.
 *
 * Built by backend/provision/subscribe_guard.py with `cc -shared -fPIC`; the few
 * declarations below are those of mosquitto_broker.h / mosquitto_plugin.h 2.0, so no
 * -dev package is needed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MOSQ_ERR_SUCCESS 0
#define MOSQ_ERR_NOMEM 1
#define MOSQ_ERR_INVAL 3
#define MOSQ_ERR_ACL_DENIED 12
#define MOSQ_ERR_PLUGIN_DEFER 17
#define MOSQ_EVT_ACL_CHECK 2
#define MOSQ_ACL_SUBSCRIBE 0x04
#define MOSQ_LOG_NOTICE 0x02
#define MAX_TEMPLATES 8
#define MAX_TOPIC 512

struct mosquitto;
typedef struct mosquitto_plugin_id_t mosquitto_plugin_id_t;
typedef struct mqtt5__property mosquitto_property;

struct mosquitto_opt {
	char *key;
	char *value;
};

struct mosquitto_evt_acl_check {
	void *future;
	struct mosquitto *client;
	const char *topic;
	const void *payload;
	mosquitto_property *properties;
	int access;
	uint32_t payloadlen;
	uint8_t qos;
	bool retain;
	void *future2[4];
};

typedef int (*MOSQ_FUNC_generic_callback)(int, void *, void *);
int mosquitto_callback_register(mosquitto_plugin_id_t *identifier, int event,
		MOSQ_FUNC_generic_callback cb_func, const void *event_data, void *userdata);
int mosquitto_callback_unregister(mosquitto_plugin_id_t *identifier, int event,
		MOSQ_FUNC_generic_callback cb_func, const void *event_data);
const char *mosquitto_client_username(const struct mosquitto *client);
void mosquitto_log_printf(int level, const char *fmt, ...);

static mosquitto_plugin_id_t *plugin_id;
static char *templates[MAX_TEMPLATES];
static int template_count;

/* Expand `%u` in tmpl with username into out; false if it does not fit. */
static bool expand(const char *tmpl, const char *username, char *out, size_t size)
{
	size_t n = 0;
	for(const char *p = tmpl; *p; p++){
		const char *piece = p;
		size_t len = 1;
		if(p[0] == '%' && p[1] == 'u'){
			piece = username;
			len = strlen(username);
			p++;
		}
		if(n + len >= size) return false;
		memcpy(out + n, piece, len);
		n += len;
	}
	out[n] = '\0';
	return true;
}

static bool allowed(const char *username, const char *filter)
{
	char topic[MAX_TOPIC];
	if(username == NULL || username[0] == '\0' || strpbrk(username, "/+#$") != NULL){
		return false;
	}
	for(int i = 0; i < template_count; i++){
		if(expand(templates[i], username, topic, sizeof(topic)) && strcmp(topic, filter) == 0){
			return true;
		}
	}
	return false;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *username;
	(void)event;
	(void)userdata;

	if(ed->access != MOSQ_ACL_SUBSCRIBE){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	username = mosquitto_client_username(ed->client);
	if(allowed(username, ed->topic)){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "tincoso subscribe guard: denied %s subscribing to %s",
			username ? username : "(anonymous)", ed->topic);
	return MOSQ_ERR_ACL_DENIED;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	plugin_id = identifier;
	template_count = 0;
	for(int i = 0; i < option_count; i++){
		if(strcmp(options[i].key, "subscribe") != 0) continue;
		char *copy = strdup(options[i].value);
		if(copy == NULL) return MOSQ_ERR_NOMEM;
		for(char *tok = strtok(copy, " "); tok && template_count < MAX_TEMPLATES; tok = strtok(NULL, " ")){
			templates[template_count] = strdup(tok);
			if(templates[template_count] == NULL){
				free(copy);
				return MOSQ_ERR_NOMEM;
			}
			template_count++;
		}
		free(copy);
	}
	return mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	for(int i = 0; i < template_count; i++){
		free(templates[i]);
	}
	template_count = 0;
	return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
}
