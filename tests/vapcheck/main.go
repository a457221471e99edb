// Command vapcheck runs a ValidatingAdmissionPolicy's variables and validations the
// way the API server's admission plugin does (k8s.io/apiserver's CEL environment,
// composition, runtime cost budget), without an API server, so the checks the chart
// generates from the schema are tested in seconds.
//
// Input (stdin, JSON): {"variables": [{"name", "expression"}], "validations":
// [{"expression", "message", "messageExpression", "reason"}], "objects": [<object>...], "namespaces":
// [<Namespace or null>...]}; namespaces (optional) gives each object's namespaceObject.
// Output (stdout, JSON): {"compileErrors": [...], "results": [{"denied": [messages]}]},
// one result per object, in order. It exits 1 only when it cannot run at all.
package main

import (
	"context"
	stdjson "encoding/json"
	"fmt"
	"os"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
)

type input struct {
	Variables   []validating.Variable `json:"variables"`
	Validations []validation          `json:"validations"`
	Objects     []stdjson.RawMessage  `json:"objects"`
	Namespaces  []*corev1.Namespace   `json:"namespaces"`
}

// validation is a policy's validation: the condition and, optionally, the CEL that
// builds its message (evaluated only when the condition denies).
type validation struct {
	validating.ValidationCondition
	MessageExpression string `json:"messageExpression"`
}

func (in input) conditions() []plugincel.ExpressionAccessor {
	accessors := make([]plugincel.ExpressionAccessor, len(in.Validations))
	for i := range in.Validations {
		accessors[i] = &in.Validations[i].ValidationCondition
	}
	return accessors
}

// messages are as the API server compiles them: nil where a validation has none.
func (in input) messages() []plugincel.ExpressionAccessor {
	accessors := make([]plugincel.ExpressionAccessor, len(in.Validations))
	for i := range in.Validations {
		if in.Validations[i].MessageExpression != "" {
			accessors[i] = &validating.MessageExpressionCondition{MessageExpression: in.Validations[i].MessageExpression}
		}
	}
	return accessors
}

type result struct {
	Denied []string `json:"denied"`
}

type output struct {
	CompileErrors []string `json:"compileErrors"`
	Results       []result `json:"results"`
}

var resources = map[string]string{
	"DeviceClass":           "deviceclasses",
	"ResourceClaim":         "resourceclaims",
	"ResourceClaimTemplate": "resourceclaimtemplates",
	"Pod":                   "pods",
}

func main() {
	var in input
	if err := stdjson.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "input:", err)
		os.Exit(1)
	}
	out := output{CompileErrors: compileErrors(in), Results: []result{}}
	validator := compile(in)
	for i, raw := range in.Objects {
		// As the API server decodes: integers become int64, other numbers float64.
		object := map[string]any{}
		if err := json.Unmarshal(raw, &object); err != nil {
			fmt.Fprintln(os.Stderr, "object:", err)
			os.Exit(1)
		}
		var namespace *corev1.Namespace
		if i < len(in.Namespaces) {
			namespace = in.Namespaces[i]
		}
		res, err := validate(validator, object, namespace)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		out.Results = append(out.Results, res)
	}
	if err := stdjson.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// compileErrors compiles as the API server does when the policy is created or
// updated (NewExpressions: only what this version's CEL library offers).
func compileErrors(in input) []string {
	errs := []string{}
	compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		return []string{err.Error()}
	}
	options := plugincel.OptionalVariableDeclarations{HasParams: false, HasAuthorizer: true}
	for i := range in.Variables {
		if res := compiler.CompileAndStoreVariable(&in.Variables[i], options, environment.NewExpressions); res.Error != nil {
			errs = append(errs, fmt.Sprintf("variable %s: %v", in.Variables[i].Name, res.Error))
		}
	}
	for i, accessor := range in.conditions() {
		if res := compiler.CompileCELExpression(accessor, options, environment.NewExpressions); res.Error != nil {
			errs = append(errs, fmt.Sprintf("validation %d: %v", i, res.Error))
		}
	}
	messageOptions := plugincel.OptionalVariableDeclarations{HasParams: false, HasAuthorizer: false}
	for i, accessor := range in.messages() {
		if accessor == nil {
			continue
		}
		if res := compiler.CompileCELExpression(accessor, messageOptions, environment.NewExpressions); res.Error != nil {
			errs = append(errs, fmt.Sprintf("messageExpression %d: %v", i, res.Error))
		}
	}
	return errs
}

// compile builds the validator as the admission plugin does for a stored policy.
func compile(in input) validating.Validator {
	compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	fail := admissionregistrationv1.Fail
	if err != nil {
		return validating.NewValidator(nil, nil, nil, nil, &fail, err)
	}
	options := plugincel.OptionalVariableDeclarations{HasParams: false, HasAuthorizer: true}
	variables := make([]plugincel.NamedExpressionAccessor, len(in.Variables))
	for i := range in.Variables {
		variables[i] = &in.Variables[i]
	}
	compiler.CompileAndStoreVariables(variables, options, environment.StoredExpressions)
	messageOptions := plugincel.OptionalVariableDeclarations{HasParams: false, HasAuthorizer: false}
	return validating.NewValidator(
		compiler.CompileCondition(in.conditions(), options, environment.StoredExpressions),
		nil,
		compiler.CompileCondition(nil, options, environment.StoredExpressions),
		compiler.CompileCondition(in.messages(), messageOptions, environment.StoredExpressions),
		&fail,
		nil,
	)
}

func validate(validator validating.Validator, object map[string]any, namespace *corev1.Namespace) (result, error) {
	obj := &unstructured.Unstructured{Object: object}
	gvk := obj.GroupVersionKind()
	resource, ok := resources[gvk.Kind]
	if !ok {
		return result{}, fmt.Errorf("no resource for kind %q", gvk.Kind)
	}
	gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: resource}
	attributes := admission.NewAttributesRecord(obj, nil, gvk, obj.GetNamespace(), obj.GetName(), gvr, "", admission.Create, &metav1.CreateOptions{}, false, nil)
	versioned := &admission.VersionedAttributes{Attributes: attributes, VersionedKind: gvk, VersionedObject: admission.NewLazyObject(obj)}
	res := validator.Validate(context.Background(), gvr, versioned, nil, namespace, celconfig.RuntimeCELCostBudget, nil)
	denied := []string{}
	for _, decision := range res.Decisions {
		if decision.Action == validating.ActionDeny {
			denied = append(denied, strings.TrimSpace(fmt.Sprintf("%s %s", decision.Evaluation, decision.Message)))
		}
	}
	return result{Denied: denied}, nil
}
