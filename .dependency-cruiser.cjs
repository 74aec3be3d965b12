// dependency-cruiser: the layers of ../shared/DESIGN.md ("Layout", "Data flows one way") as
// rules over src/ (`npm run depcheck`; `npm test` runs it through test/prepare.sh). Type-only
// imports count: a layer that names another's types depends on it.
//
// Top to bottom (a layer imports only from below it; rule names in brackets):
//   main.ts, serve.ts, doctor.ts   the CLI: anything
//   cri/      gRPC surface: pod, image, runtime, stream, proxy, grpc, gen, leaves  [cri-imports]
//   proxy/    downstream CRI routing: pod (id ownership), grpc, gen, leaves       [proxy-imports]
//   runtime/  node-wide Status/RuntimeConfig, beside pod/; nothing below imports it
//             [only-top-imports-runtime]
//   pod/      the sandbox and container verbs; the parts do not import it [parts-do-not-import-pod];
//             it reaches VMs through vm/driver.ts only, never libvirt [pod-uses-the-vm-driver]
//   vm/ net/ image/ stream/ util/ guest/   the parts pod/ asks to do their part (guest/: the
//             sandboxed pod's guest kit, agent client, pod VM spec)
//   grpc/     the CRI proto loader and the RPC log line, shared by cri/ and proxy/
//   leaves    config.ts, errors.ts, log.ts, version.ts
// and nothing below cri/ imports cri/ or proxy/ [nothing-below-imports-cri, only-cri-imports-proxy],
// nor the generated CRI wire types: cri/ maps them to vmlet's own [no-wire-types-below-cri].
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import cycles between files (type-only imports included).',
      from: {},
      to: { circular: true },
    },
    {
      name: 'cri-imports',
      severity: 'error',
      comment:
        'cri/ maps wire ↔ internal types and calls pod/ (and the image store for ImageService, ' +
        'runtime/ for Status and RuntimeConfig, stream/ for streaming URLs, proxy/ for routing): no ' +
        'libvirt, network or filesystem code of its own.',
      from: { path: '^src/cri/' },
      to: {
        path: '^src/',
        pathNot: [
          '^src/(cri|pod|image|runtime|stream|proxy|grpc|gen)/',
          '^src/(config|errors|log|version)[.]ts$',
        ],
      },
    },
    {
      name: 'nothing-below-imports-cri',
      severity: 'error',
      comment: 'Data flows one way: nothing below cri/ knows about it.',
      from: { path: '^src/(pod|vm|net|image|stream|proxy|runtime|util|grpc|guest)/' },
      to: { path: '^src/cri/' },
    },
    {
      name: 'no-wire-types-below-cri',
      severity: 'error',
      comment:
        'The generated CRI types (src/gen/) are the wire: cri/ maps them to vmlet\'s own types (pod/configs.ts, ' +
        'pod/stats.ts, …) and back, so nothing below it names them. proxy/ and grpc/ speak gRPC and may.',
      from: { path: ['^src/(pod|vm|net|image|stream|runtime|util|guest)/', '^src/(config|errors|log|version)[.]ts$'] },
      to: { path: '^src/gen/' },
    },
    {
      name: 'only-cri-imports-proxy',
      severity: 'error',
      comment: 'proxy/ is the routing cri/server.ts puts in front of vmlet: nothing below uses it.',
      from: { path: '^src/(pod|vm|net|image|stream|runtime|util|grpc)/' },
      to: { path: '^src/proxy/' },
    },
    {
      name: 'pod-uses-the-vm-driver',
      severity: 'error',
      comment:
        'pod/ reaches VMs through the VM driver (vm/driver.ts: vmlet\'s own types and errors); only vm/ ' +
        '(libvirt-driver.ts over libvirt.ts and rpc/) and the CLI that wires it know libvirt.',
      from: { path: '^src/pod/' },
      to: { path: ['^src/vm/libvirt[.]ts$', '^src/vm/libvirt-driver[.]ts$', '^src/vm/rpc/'] },
    },
    {
      name: 'parts-do-not-import-pod',
      severity: 'error',
      comment: 'pod/ asks vm/, net/, image/, stream/ and util/ to do their part; they do not call back.',
      from: { path: '^src/(vm|net|image|stream|util|guest)/' },
      to: { path: '^src/pod/' },
    },
    {
      name: 'only-top-imports-runtime',
      severity: 'error',
      comment: 'runtime/ (Status, RuntimeConfig) sits beside pod/ under cri/: the parts below do not import it.',
      from: { path: '^src/(pod|vm|net|image|stream|proxy|util|grpc|guest)/' },
      to: { path: '^src/runtime/' },
    },
    {
      name: 'proxy-imports',
      severity: 'error',
      comment: 'proxy/ routes calls by id ownership (pod/) and talks gRPC (grpc/); nothing else.',
      from: { path: '^src/proxy/' },
      to: {
        path: '^src/',
        pathNot: ['^src/(proxy|pod|grpc|gen)/', '^src/(config|errors|log)[.]ts$'],
      },
    },
    {
      name: 'grpc-stays-on-top',
      severity: 'error',
      comment: 'gRPC stays in the layers that speak it (the map: nothing below pod/ knows about gRPC): only cri/, proxy/ and grpc/ import @grpc/*.',
      from: { path: '^src/', pathNot: '^src/(cri|proxy|grpc|gen)/' },
      to: { path: '(^|/)node_modules/@grpc/' },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment: 'An import that does not resolve is a typo or a missing package.',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: ['node_modules', '^src/gen/'] },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
  },
};
