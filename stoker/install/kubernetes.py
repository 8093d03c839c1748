"""The platform on Kubernetes (``kubectl apply -f -``): two namespaces (the platform's, named after the install, and
the functions'), least-privilege Roles, default-deny network policies with the egress functions need, default
limits for function pods, disruption budgets and spread for gateway and controller, Redis with a password and a
memory bound, every image pinned (the platform and Redis images reachable by kustomize ``images:``; the runtime
image, which the gateway starts pods with, is a variable: set it with ``--runtime-image``).

Secrets are not rendered (they would be printed): ``<name>-admin``, ``<name>-platform-key`` and ``<name>-redis``
each hold one key, created by ``stoker install kubernetes --apply`` or by hand (docs/install.md). The processes read
them from files, so no password is in an environment variable of a Deployment.
"""

from __future__ import annotations

from typing import Any

from stoker.install.values import Values

Obj = dict[str, Any]
LEASE = "stoker-controller"
SECRETS = "/var/run/stoker/secrets"
# Egress of function pods: the internet, never the cluster's own or the cloud's private ranges (the API server,
# other pods and services, node and metadata addresses), unless an operator adds a policy allowing them.
PRIVATE_V4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8"]
PRIVATE_V6 = ["fc00::/7", "fe80::/10", "::1/128", "fd00:ec2::254/128"]


def secret_names(values: Values) -> dict[str, str]:
    names = {"admin-password": f"{values.name}-admin", "platform-key": f"{values.name}-platform-key"}
    if not values.redis_url:
        names["redis-password"] = f"{values.name}-redis"
    return names


def _meta(values: Values, name: str, namespace: str, component: str = "", **extra: Any) -> Obj:
    labels = dict(values.labels)
    if component:
        labels["app.kubernetes.io/name"] = component
    return {"name": name, "namespace": namespace, "labels": labels, **extra}


def _pod_security() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,  # the secret files (0440) are readable by the platform's user
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> Obj:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def _secret_volume(values: Values, roles: tuple[str, ...]) -> Obj:
    names = secret_names(values)
    sources = [{"secret": {"name": names[r], "items": [{"key": r, "path": r}]}} for r in roles if r in names]
    return {"name": "secrets", "projected": {"sources": sources, "defaultMode": 0o440}}


def _entry(values: Values, args: str, admin: bool) -> list[str]:
    ns = values.name
    redis = (
        f'STOKER_REDIS_URL="redis://:$(cat {SECRETS}/redis-password)@redis.{ns}.svc:6379/0"'
        if not values.redis_url
        else f"STOKER_REDIS_URL={values.redis_url!r}"
    )
    exports = [redis] + ([f'STOKER_ADMIN_PASSWORD="$(cat {SECRETS}/admin-password)"'] if admin else [])
    return ["/bin/sh", "-c", "".join(f"export {e}; " for e in exports) + f"exec python3 -m stoker {args}"]


def _spread(component: str) -> Obj:
    selector = {"matchLabels": {"app.kubernetes.io/name": component}}
    return {
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": selector}
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
        ],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": selector},
                    }
                ]
            }
        },
    }


def _platform_deployment(values: Values, component: str) -> Obj:
    gateway = component == "gateway"
    port = 8080 if gateway else 8081
    env: list[Obj] = [
        {"name": "STOKER_HOME", "value": "/tmp/stoker"},
        {"name": "STOKER_K8S_NAMESPACE", "value": values.functions_namespace},
        {"name": "STOKER_K8S_RUNTIME_IMAGE", "value": values.runtime_image},
        {"name": "STOKER_PLATFORM_KEY_FILE", "value": f"{SECRETS}/platform-key"},
    ]
    if gateway:
        env.append({"name": "STOKER_AUTOSCALE", "value": "false"})
        args = "up --backend kubernetes --host 0.0.0.0 --port 8080"
    else:
        env += [
            {"name": "STOKER_POOL_SIZE", "value": str(values.pool_size)},
            {"name": "STOKER_LEASE_NAME", "value": LEASE},
            {"name": "STOKER_LEASE_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "STOKER_LEASE_HOLDER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "STOKER_LEADER_TTL_S", "value": "15"},
        ]
        args = "controller --backend kubernetes --host 0.0.0.0 --port 8081"
    port_name = "http" if gateway else "metrics"
    container: Obj = {
        "name": component,
        "image": values.platform_image,
        "imagePullPolicy": "IfNotPresent",
        "command": _entry(values, args, admin=gateway),
        "env": env,
        "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
        # Liveness on the port: a gateway restarted because Redis is down would not bring Redis back.
        "livenessProbe": {"tcpSocket": {"port": port_name}, "initialDelaySeconds": 10, "periodSeconds": 10},
        "readinessProbe": {
            "httpGet": {"path": "/readyz" if gateway else "/healthz", "port": port_name},
            "periodSeconds": 2 if gateway else 10,
        },
        # Endpoints are removed while this sleeps, so no new call is sent to a pod that stopped accepting.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        "resources": {
            "requests": {"cpu": "100m" if gateway else "50m", "memory": "128Mi" if gateway else "96Mi"},
            "limits": {"memory": "512Mi" if gateway else "256Mi"},
        },
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "secrets", "mountPath": SECRETS, "readOnly": True},
        ],
    }
    roles = ("platform-key", "redis-password", "admin-password") if gateway else ("platform-key", "redis-password")
    pod: Obj = {
        "serviceAccountName": f"stoker-{component}",
        "terminationGracePeriodSeconds": 60,
        "securityContext": _pod_security(),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, _secret_volume(values, roles)],
        **_spread(component),
    }
    spec: Obj = {
        "replicas": values.gateway_replicas if gateway else values.controller_replicas,
        "selector": {"matchLabels": {"app.kubernetes.io/name": component}},
        "template": {"metadata": {"labels": {**values.labels, "app.kubernetes.io/name": component}}, "spec": pod},
    }
    if gateway:
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(values, component, values.name, component),
            "spec": spec}  # fmt: skip


def _service(values: Values, name: str, component: str, port_name: str, port: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(values, name, values.name, component),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": component},
            "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}],
        },
    }


def _pdb(values: Values, component: str) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(values, component, values.name, component),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": component}}},
    }


def _role(values: Values, name: str, namespace: str, rules: list[Obj]) -> list[Obj]:
    subject = name.removeprefix(f"{values.name}-").removesuffix("-lease")
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(values, name, namespace),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(values, name, namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": f"stoker-{subject}", "namespace": values.name}],
        },
    ]


def _rule(group: str, resources: list[str], verbs: list[str], **extra: Any) -> Obj:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs, **extra}


def rbac(values: Values) -> list[Obj]:
    """Namespaced Roles only, with only the verbs the code calls (tests/deploy checks them against the calls)."""
    fns = values.functions_namespace
    gateway = [
        _rule("apps", ["deployments"], ["get", "list", "watch", "create", "update", "delete"]),
        _rule("apps", ["deployments/scale"], ["patch"]),
        _rule("", ["services"], ["create", "patch", "delete"]),
        _rule("", ["pods"], ["list", "watch", "patch", "delete"]),
        _rule("", ["pods/log"], ["get"]),
        # list: GET /system/secrets names them (OpenFaaS's API); the namespace holds only the platform's secrets
        _rule("", ["secrets"], ["list", "create", "update", "delete"]),
        # one immutable ConfigMap per code version; removed one by one by name, never by collection
        _rule("", ["configmaps"], ["get", "list", "create", "delete"]),
        _rule("discovery.k8s.io", ["endpointslices"], ["list", "watch"]),
    ]
    controller = [
        _rule("apps", ["deployments"], ["list", "watch"]),
        _rule("apps", ["deployments/scale"], ["patch"]),
        _rule("discovery.k8s.io", ["endpointslices"], ["list", "watch"]),
        _rule("", ["pods"], ["list", "watch", "create", "patch", "delete"]),
        _rule("", ["secrets"], ["list", "create", "delete"]),
        _rule("", ["configmaps"], ["get", "list", "delete"]),
    ]
    lease = [
        _rule("coordination.k8s.io", ["leases"], ["get", "update"], resourceNames=[LEASE]),
        _rule("coordination.k8s.io", ["leases"], ["create"]),  # create cannot be limited by name
    ]
    accounts = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(values, f"stoker-{c}", values.name)}
        for c in ("gateway", "controller")
    ]
    return [
        *accounts,
        *_role(values, f"{values.name}-gateway", fns, gateway),
        *_role(values, f"{values.name}-controller", fns, controller),
        *_role(values, f"{values.name}-controller-lease", values.name, lease),
    ]


def _policy(values: Values, name: str, namespace: str, spec: Obj) -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta(values, name, namespace),
            "spec": spec}  # fmt: skip


def _from_platform(values: Values, components: list[str]) -> Obj:
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": values.name}},
        "podSelector": {
            "matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": components}]
        },
    }


def network_policies(values: Values) -> list[Obj]:
    fns = values.functions_namespace
    http = [{"protocol": "TCP", "port": 8080}]
    dns = {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    internet = {
        "to": [
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_V4}},
            {"ipBlock": {"cidr": "::/0", "except": PRIVATE_V6}},
        ]
    }
    return [
        _policy(values, "default-deny", fns, {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        _policy(
            values,
            "functions-from-gateway",
            fns,
            {
                "podSelector": {"matchExpressions": [{"key": "faas_function", "operator": "Exists"}]},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [_from_platform(values, ["gateway"])], "ports": http}],
            },
        ),
        _policy(
            values,
            "pool-from-platform",
            fns,
            {
                "podSelector": {"matchExpressions": [{"key": "stoker.dev/pool", "operator": "Exists"}]},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [_from_platform(values, ["gateway", "controller"])], "ports": http}],
            },
        ),
        # Functions reach DNS, the internet, and the gateway (to call other functions through it); nothing else.
        _policy(
            values,
            "functions-egress",
            fns,
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [dns, internet, {"to": [_from_platform(values, ["gateway"])], "ports": http}],
            },
        ),
        _policy(
            values,
            "redis-from-platform",
            values.name,
            {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "podSelector": {
                                    "matchExpressions": [
                                        {
                                            "key": "app.kubernetes.io/name",
                                            "operator": "In",
                                            "values": ["gateway", "controller"],
                                        }
                                    ]
                                }
                            }
                        ]
                    }
                ],
            },
        ),
        # The controller's /metrics and /healthz: this namespace, and namespaces labelled for scraping.
        _policy(
            values,
            "controller-metrics",
            values.name,
            {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "controller"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {"podSelector": {}},
                            {"namespaceSelector": {"matchLabels": {"stoker.dev/scrape": "true"}}},
                        ],
                        "ports": [{"protocol": "TCP", "port": 8081}],
                    }
                ],
            },
        ),
    ]


def redis(values: Values) -> list[Obj]:
    if values.redis_url:
        return []
    script = (
        f'exec redis-server --requirepass "$(cat {SECRETS}/redis-password)" --appendonly yes --save "" --dir /data '
        f"--maxmemory {values.redis_maxmemory} --maxmemory-policy noeviction"
    )
    container: Obj = {
        "name": "redis",
        "image": values.redis_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", script],
        "ports": [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "secrets", "mountPath": SECRETS, "readOnly": True},
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(values, "redis", values.name, "redis"),
        "spec": {
            "replicas": 1,  # one writer of the volume; for more, use a managed Redis (--redis-url)
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": "redis"}},
            "template": {
                "metadata": {"labels": {**values.labels, "app.kubernetes.io/name": "redis"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": _pod_security(),
                    "containers": [container],
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": "redis"}},
                        _secret_volume(values, ("redis-password",)),
                    ],
                },
            },
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(values, "redis", values.name, "redis"),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    return [pvc, deployment, _service(values, "redis", "redis", "redis", 6379)]


def _namespace(values: Values, name: str) -> Obj:
    labels = {**values.labels, "pod-security.kubernetes.io/enforce": "restricted"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _limit_range(values: Values) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _meta(values, "function-defaults", values.functions_namespace),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": {"memory": values.function_memory},
                    "defaultRequest": {"cpu": "50m", "memory": "64Mi"},
                }
            ]
        },
    }


# What the Ingress routes from the internet (docs/security.md): the function routes, the console, and /system/ (the
# CLI and the console's calls; it needs the admin password). Never /metrics (what runs, how often, how it fails) nor
# anything else the gateway serves: those stay inside the cluster (the ServiceMonitor scrapes the pods directly).
INGRESS_PATHS = ("/function/", "/async-function/", "/system/", "/ui/")


def _ingress(values: Values) -> list[Obj]:
    if not values.ingress_host:
        return []
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": _meta(
                values, "gateway", values.name, "gateway", annotations={"cert-manager.io/cluster-issuer": "letsencrypt"}
            ),
            "spec": {
                "tls": [{"hosts": [values.ingress_host], "secretName": f"{values.name}-gateway-tls"}],
                "rules": [
                    {
                        "host": values.ingress_host,
                        "http": {
                            "paths": [
                                {
                                    "path": path,
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "gateway", "port": {"name": "http"}}},
                                }
                                for path in INGRESS_PATHS
                            ]
                        },
                    }
                ],
            },
        }
    ]


def service_monitor(values: Values) -> Obj:
    """A prometheus-operator ServiceMonitor (``--service-monitor``) scraping every gateway and controller pod.

    No credentials: ``/metrics`` is open on both, as on OpenFaaS (docs/security.md). What it needs is reach: the
    gateway's port takes any in-cluster peer, the controller's only its own namespace and namespaces labelled
    ``stoker.dev/scrape=true`` (the controller-metrics NetworkPolicy), so Prometheus's namespace needs that label.
    """
    meta = _meta(values, "stoker", values.name)
    meta["labels"].update(values.monitor_labels())
    endpoint = {"path": "/metrics", "scheme": "http", "interval": "30s", "scrapeTimeout": "10s"}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta,
        "spec": {
            "jobLabel": "app.kubernetes.io/name",  # job="gateway" / job="controller"
            "namespaceSelector": {"matchNames": [values.name]},
            "selector": {
                "matchLabels": {"app.kubernetes.io/instance": values.name},
                "matchExpressions": [
                    {"key": "app.kubernetes.io/name", "operator": "In", "values": ["gateway", "controller"]}
                ],
            },
            # Each endpoint applies to the Services with that port name: the gateway's "http", the controller's
            # "metrics". Prometheus scrapes every pod behind them; with several gateways, sum over instances.
            "endpoints": [{"port": "http", **endpoint}, {"port": "metrics", **endpoint}],
        },
    }


def render(values: Values) -> list[Obj]:
    """Every object of the install, namespaces first (the order ``kubectl apply -f -`` needs)."""
    return [
        _namespace(values, values.name),
        _namespace(values, values.functions_namespace),
        *rbac(values),
        _limit_range(values),
        *network_policies(values),
        *redis(values),
        _platform_deployment(values, "gateway"),
        _service(values, "gateway", "gateway", "http", 8080),
        _pdb(values, "gateway"),
        _platform_deployment(values, "controller"),
        _service(values, "controller-metrics", "controller", "metrics", 8081),
        _pdb(values, "controller"),
        *_ingress(values),
        *([service_monitor(values)] if values.service_monitor else []),
    ]


HEADER = """\
stoker on Kubernetes (docs/install.md), generated by:  stoker install kubernetes{flags}
Create the secrets {secrets} in namespace {name} first (or let `stoker install kubernetes --apply` do it), then
  kubectl apply -f THIS_FILE
Remove with `stoker uninstall kubernetes --name {name}` (namespaces and functions stay unless asked)."""
