// Validates rendered manifests (YAML on stdin, from `kubectl kustomize`) against the Kubernetes,
// Prometheus Operator and Gateway API schemas of npm's kubernetes-models packages. The Gateway API
// Inference Extension has no such package: InferencePool is checked against its v1 reference
// (gateway-api-inference-extension.sigs.k8s.io/reference/spec) by hand below.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { Deployment } from "kubernetes-models/apps/v1";
import { Service } from "kubernetes-models/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1";

const models = {
  "apps/v1/Deployment": Deployment,
  "v1/Service": Service,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "monitoring.coreos.com/v1/PodMonitor": PodMonitor,
  "gateway.networking.k8s.io/v1/HTTPRoute": HTTPRoute,
  "inference.networking.k8s.io/v1/InferencePool": InferencePool,
};

function InferencePool(object) {
  this.validate = () => {
    const spec = object.spec ?? {};
    const fail = (why) => { throw new Error(`InferencePool ${object.metadata?.name}: ${why}`); };
    const labels = spec.selector?.matchLabels;
    if (!labels || Object.keys(labels).length === 0) fail("spec.selector.matchLabels is required");
    const ports = spec.targetPorts ?? [];
    if (ports.length < 1 || ports.length > 8) fail("spec.targetPorts needs 1 to 8 ports");
    if (new Set(ports.map((p) => p.number)).size !== ports.length) fail("spec.targetPorts numbers must be unique");
    if (ports.some((p) => !Number.isInteger(p.number) || p.number < 1 || p.number > 65535)) fail("spec.targetPorts[].number must be 1-65535");
    const picker = spec.endpointPickerRef;
    if (!picker?.name) fail("spec.endpointPickerRef.name is required");
    if ((picker.kind ?? "Service") === "Service" && !Number.isInteger(picker.port?.number)) fail("spec.endpointPickerRef.port.number is required for a Service");
    if (picker.failureMode && !["FailOpen", "FailClose"].includes(picker.failureMode)) fail("spec.endpointPickerRef.failureMode is FailOpen or FailClose");
    if (spec.appProtocol && !["http", "kubernetes.io/h2c"].includes(spec.appProtocol)) fail("spec.appProtocol is http or kubernetes.io/h2c");
  };
}

let failures = 0, count = 0;
for (const document of parseAllDocuments(readFileSync(0, "utf8"))) {
  const object = document.toJS();
  if (!object) continue;
  const key = `${object.apiVersion}/${object.kind}`;
  const Model = models[key];
  count++;
  try {
    if (!Model) throw new Error("no schema for this kind");
    new Model(object).validate();
  } catch (error) {
    failures++;
    console.error(`${key} ${object.metadata?.name}: ${error.message}`);
  }
}
console.log(`validate: ${count} objects, ${failures} invalid`);
process.exit(failures === 0 && count > 0 ? 0 : 1);
