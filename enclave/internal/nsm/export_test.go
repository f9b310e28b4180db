package nsm

// SeedKernelEntropyTo is SeedKernelEntropy writing to path instead of
// /dev/random.
var SeedKernelEntropyTo = seedKernelEntropy
